#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn fixture() -> Option<(PathBuf, Vec<u8>)> {
    let dir = ecs_model::spec::require_or_skip("Go agent bbolt checkpoint")?;
    let path = dir.join("samples/go-agent-state/agent.db");
    let bytes = std::fs::read(&path).unwrap();
    Some((path, bytes))
}

fn bucket(pairs: &[(&[u8], &[u8])]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

/// Small inline buckets, an empty one, a bucket of many keys (several
/// leaves under a branch), and one with values larger than a page.
fn sample() -> Buckets {
    let mut b = Buckets::new();
    b.insert(
        "metadata".into(),
        bucket(&[
            (b"cluster-name", b"\"default\""),
            (b"agent-version", b"\"1\""),
        ]),
    );
    b.insert("eniattachments".into(), BTreeMap::new());
    b.insert(
        "tasks".into(),
        (0..600u32)
            .map(|i| (format!("task-{i:05}").into_bytes(), vec![b'x'; 40]))
            .collect(),
    );
    b.insert(
        "containers".into(),
        (0..3u8)
            .map(|i| (vec![b'c', i + 1], vec![i; 9000 + usize::from(i)]))
            .collect(),
    );
    b
}

fn page_header(file: &[u8], id: usize) -> (u64, u16, u16, u32) {
    let at = id * WRITE_PAGE_SIZE;
    (
        le_u64(file, at).unwrap(),
        le_u16(file, at + 8).unwrap(),
        le_u16(file, at + 10).unwrap(),
        le_u32(file, at + 12).unwrap(),
    )
}

fn pages_with_flags(file: &[u8], flags: u16) -> Vec<usize> {
    (0..file.len() / WRITE_PAGE_SIZE)
        .filter(|&id| {
            let (own, f, _, _) = page_header(file, id);
            own == id as u64 && f == flags
        })
        .collect()
}

fn set_u64(file: &mut [u8], at: usize, value: u64) {
    file[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn set_u32(file: &mut [u8], at: usize, value: u32) {
    file[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Rewrites the checksum of the meta on page `page` after an edit.
fn reseal_meta(file: &mut [u8], page: usize) {
    let at = page * WRITE_PAGE_SIZE + PAGE_HEADER;
    let sum = fnv1a64(&file[at..at + META_SUMMED]);
    set_u64(file, at + META_SUMMED, sum);
}

// ---------------------------------------------------------------- fixture

#[test]
fn fixture_parses_to_the_dump() {
    let Some((path, bytes)) = fixture() else {
        return;
    };
    let dump: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.with_file_name("agent.db.json")).unwrap())
            .unwrap();
    let dump = dump.as_object().unwrap();
    let buckets = parse(&bytes).unwrap();

    let names: Vec<&String> = buckets.keys().collect();
    let dumped: Vec<&String> = dump.keys().collect();
    assert_eq!(names, dumped);
    for (name, keys) in &buckets {
        let expected = dump[name].as_object().unwrap();
        let ours: Vec<String> = keys
            .keys()
            .map(|k| String::from_utf8(k.clone()).unwrap())
            .collect();
        let theirs: Vec<String> = expected.keys().cloned().collect();
        assert_eq!(ours, theirs, "keys of bucket {name}");
        for (key, value) in keys {
            let key = std::str::from_utf8(key).unwrap();
            let value: serde_json::Value = serde_json::from_slice(value).unwrap();
            assert_eq!(value, expected[key], "value of {name}/{key}");
        }
    }
    assert_eq!(buckets["tasks"].len(), 3);
    assert_eq!(buckets["containers"].len(), 4);
}

#[test]
fn fixture_meta_and_layout_are_as_described() {
    let Some((_, bytes)) = fixture() else {
        return;
    };
    assert_eq!(bytes.len(), 131_072);
    assert_eq!(page_size(&bytes).unwrap(), 4096);
    let meta = current_meta(&bytes, 4096).unwrap();
    assert_eq!((meta.txid, meta.root, meta.pgid), (55, 10, 21));
    // The two big buckets live on leaf pages with overflow; no branches.
    assert!(pages_with_flags(&bytes, BRANCH_PAGE).is_empty());
    assert!(pages_with_flags(&bytes, LEAF_PAGE)
        .iter()
        .any(|&id| page_header(&bytes, id).3 > 0));
}

#[test]
fn fixture_read_from_disk() {
    let Some((path, bytes)) = fixture() else {
        return;
    };
    assert_eq!(read(&path).unwrap(), parse(&bytes).unwrap());
}

#[test]
fn fixture_buckets_round_trip() {
    let Some((_, bytes)) = fixture() else {
        return;
    };
    let buckets = parse(&bytes).unwrap();
    let encoded = encode(&buckets).unwrap();
    assert_eq!(parse(&encoded).unwrap(), buckets);
    // The two buckets over a quarter page get their own pages, as in Go's
    // file; the other four stay inline.
    let meta = current_meta(&encoded, WRITE_PAGE_SIZE).unwrap();
    assert_eq!(meta.root, 3);
    let root = &encoded[3 * WRITE_PAGE_SIZE..4 * WRITE_PAGE_SIZE];
    let inline: Vec<bool> = leaf_elements(root, &String::new)
        .unwrap()
        .iter()
        .map(|e| le_u64(e.value, 0) == Some(0))
        .collect();
    // containers, eniattachments, images, metadata, resattachments, tasks
    assert_eq!(inline, [false, true, true, true, true, false]);
}

// ---------------------------------------------------------------- writer

#[test]
fn encoded_layout_is_a_fresh_bbolt_file() {
    let file = encode(&sample()).unwrap();
    let pages = file.len() / WRITE_PAGE_SIZE;
    assert_eq!(file.len() % WRITE_PAGE_SIZE, 0);
    assert_eq!(page_header(&file, 0), (0, META_PAGE, 0, 0));
    assert_eq!(page_header(&file, 1), (1, META_PAGE, 0, 0));
    assert_eq!(page_header(&file, 2), (2, FREELIST_PAGE, 0, 0));
    assert_eq!(page_header(&file, 3).1, LEAF_PAGE);
    for (page, txid) in [(0, 0), (1, 1)] {
        let meta = meta_at(&file, page * WRITE_PAGE_SIZE).unwrap().unwrap();
        assert_eq!(meta.page_size as usize, WRITE_PAGE_SIZE);
        assert_eq!((meta.txid, meta.root, meta.pgid), (txid, 3, pages as u64));
        let at = page * WRITE_PAGE_SIZE + PAGE_HEADER;
        assert_eq!(le_u64(&file, at + 32), Some(2), "freelist page");
    }
    // Every page is the start of a node or one of its overflow pages.
    let mut id = 3;
    while id < pages {
        let (own, flags, _, overflow) = page_header(&file, id);
        assert_eq!(own, id as u64);
        assert!(flags == LEAF_PAGE || flags == BRANCH_PAGE);
        id += overflow as usize + 1;
    }
    assert_eq!(id, pages);
    assert!(!pages_with_flags(&file, BRANCH_PAGE).is_empty());
    assert_eq!(parse(&file).unwrap(), sample());
}

#[test]
fn empty_database_is_four_pages() {
    let file = encode(&Buckets::new()).unwrap();
    assert_eq!(file.len(), 4 * WRITE_PAGE_SIZE);
    assert_eq!(page_header(&file, 3), (3, LEAF_PAGE, 0, 0));
    assert!(parse(&file).unwrap().is_empty());
}

#[test]
fn large_buckets_get_several_branch_levels() {
    // More keys than one page may hold (0xFFFF), in ~1800 leaves: two
    // levels of branch pages.
    let mut buckets = Buckets::new();
    buckets.insert(
        "many".into(),
        (0..70_000u32)
            .map(|i| (i.to_be_bytes().to_vec(), vec![7; 50]))
            .collect(),
    );
    buckets.insert(
        "huge".into(),
        bucket(&[(b"a", &[1; 300_000][..]), (b"b", b"small")]),
    );
    let file = encode(&buckets).unwrap();
    assert_eq!(parse(&file).unwrap(), buckets);
    let branches = pages_with_flags(&file, BRANCH_PAGE);
    let children = |id: usize| {
        branch_elements(
            &file[id * WRITE_PAGE_SIZE..(id + 1) * WRITE_PAGE_SIZE],
            &String::new,
        )
        .unwrap()
    };
    assert!(
        branches.iter().any(|&b| children(b)
            .iter()
            .all(|&c| branches.contains(&(c as usize)))),
        "a branch over branches"
    );
    assert!(pages_with_flags(&file, LEAF_PAGE)
        .iter()
        .any(|&id| page_header(&file, id).3 >= 73));
}

#[test]
fn encode_refuses_what_bbolt_refuses() {
    let mut empty_name = Buckets::new();
    empty_name.insert(String::new(), BTreeMap::new());
    let mut empty_key = Buckets::new();
    empty_key.insert("b".into(), bucket(&[(b"", b"v")]));
    let mut long_key = Buckets::new();
    long_key.insert("b".into(), bucket(&[(&[b'k'; MAX_KEY + 1], b"v")]));
    for (case, what) in [
        (empty_name, "a bucket name is empty"),
        (empty_key, "a key in bucket \"b\" is empty"),
        (long_key, "more than bbolt's 32768"),
    ] {
        let err = encode(&case).unwrap_err();
        assert!(matches!(err, BoltError::Invalid(_)), "{err}");
        assert!(err.to_string().contains(what), "{err}");
    }
    // The longest key bbolt takes is fine.
    let mut longest = Buckets::new();
    longest.insert("b".into(), bucket(&[(&[b'k'; MAX_KEY], b"v")]));
    assert_eq!(parse(&encode(&longest).unwrap()).unwrap(), longest);
}

fn arbitrary_buckets() -> impl Strategy<Value = Buckets> {
    let value = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..64),
        // Large values (past a page, so buckets leave their parent's
        // value) need not be random byte by byte.
        1 => (any::<u8>(), 0..9000usize).prop_map(|(b, n)| vec![b; n]),
    ];
    let keys = proptest::collection::btree_map(
        proptest::collection::vec(any::<u8>(), 1..40),
        value,
        0..80,
    );
    proptest::collection::btree_map("\\PC{1,20}", keys, 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn encode_then_parse_round_trips(buckets in arbitrary_buckets()) {
        let file = encode(&buckets).unwrap();
        prop_assert_eq!(parse(&file).unwrap(), buckets);
    }

    /// Any change to any byte gives a result or an error, never a panic.
    #[test]
    fn damaged_files_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut file = encode(&sample()).unwrap();
        for (at, byte) in edits {
            let at = at.index(file.len());
            file[at] = byte;
        }
        let _ = parse(&file);
        // Damage that keeps the metas valid exercises the tree walk.
        reseal_meta(&mut file, 0);
        reseal_meta(&mut file, 1);
        let _ = parse(&file);
    }
}

// ---------------------------------------------------------------- damage

#[test]
fn truncated_files_are_errors() {
    let file = encode(&sample()).unwrap();
    for len in [0, 10, 79, 80, 100, 4095, 4096, 4096 + 80, 8191, 8192, 16384] {
        let err = parse(&file[..len]).unwrap_err();
        assert!(
            matches!(err, BoltError::NotBolt(_) | BoltError::OutOfRange(_)),
            "{len}: {err}"
        );
    }
    let err = parse(&file[..file.len() - 1]).unwrap_err();
    assert!(
        err.to_string().contains("high-water mark"),
        "cut short: {err}"
    );
}

#[test]
fn other_files_are_not_bbolt() {
    let err = parse(&[0u8; 16384]).unwrap_err();
    assert!(matches!(err, BoltError::NotBolt(_)), "{err}");
    assert!(err.to_string().starts_with("not a bbolt file"), "{err}");

    let mut file = encode(&sample()).unwrap();
    for page in [0, 1] {
        set_u32(&mut file, page * WRITE_PAGE_SIZE + PAGE_HEADER, 0x1234_5678);
    }
    assert!(matches!(parse(&file), Err(BoltError::NotBolt(_))));

    let mut file = encode(&sample()).unwrap();
    for page in [0, 1] {
        set_u32(&mut file, page * WRITE_PAGE_SIZE + PAGE_HEADER + 4, 1);
        reseal_meta(&mut file, page);
    }
    let err = parse(&file).unwrap_err();
    assert!(err.to_string().contains("version 1"), "{err}");
}

#[test]
fn bad_checksums_on_both_metas_are_an_error() {
    let mut file = encode(&sample()).unwrap();
    for page in [0, 1] {
        file[page * WRITE_PAGE_SIZE + PAGE_HEADER + META_SUMMED] ^= 1;
    }
    let err = parse(&file).unwrap_err();
    assert!(matches!(err, BoltError::BadChecksum), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn one_damaged_meta_falls_back_to_the_other() {
    let good = encode(&sample()).unwrap();
    // Meta 1 (the current one) damaged: meta 0 is used.
    let mut file = good.clone();
    file[WRITE_PAGE_SIZE + PAGE_HEADER + 20] ^= 0xff;
    assert_eq!(parse(&file).unwrap(), sample());
    // Meta 0 damaged: the page size comes from meta 1, found by probing.
    let mut file = good;
    file[PAGE_HEADER + 20] ^= 0xff;
    assert_eq!(page_size(&file).unwrap(), WRITE_PAGE_SIZE);
    assert_eq!(parse(&file).unwrap(), sample());
}

#[test]
fn higher_txid_meta_wins() {
    // Two valid metas pointing at different roots: the one with the
    // higher txid is the database.
    let mut one = Buckets::new();
    one.insert("a".into(), BTreeMap::new());
    let mut file = encode(&one).unwrap();
    let empty_root = encode(&Buckets::new()).unwrap();
    // Add an empty root leaf as page 4 and point meta 0 at it with txid 7.
    file.extend_from_slice(&empty_root[3 * WRITE_PAGE_SIZE..]);
    set_u64(&mut file, 4 * WRITE_PAGE_SIZE, 4);
    for page in [0, 1] {
        set_u64(&mut file, page * WRITE_PAGE_SIZE + PAGE_HEADER + 40, 5);
        reseal_meta(&mut file, page);
    }
    set_u64(&mut file, PAGE_HEADER + 16, 4);
    set_u64(&mut file, PAGE_HEADER + 48, 7);
    reseal_meta(&mut file, 0);
    assert!(parse(&file).unwrap().is_empty());
    set_u64(&mut file, PAGE_HEADER + 48, 0);
    reseal_meta(&mut file, 0);
    assert_eq!(parse(&file).unwrap(), one);
}

#[test]
fn element_offset_out_of_range_is_an_error() {
    let mut file = encode(&sample()).unwrap();
    // The first element of the root leaf (page 3): its pos.
    set_u32(
        &mut file,
        3 * WRITE_PAGE_SIZE + PAGE_HEADER + 4,
        0xffff_fff0,
    );
    let err = parse(&file).unwrap_err();
    assert!(matches!(err, BoltError::OutOfRange(_)), "{err}");
    assert!(err.to_string().contains("element 0 of page 3"), "{err}");

    // A value size past the end of its page.
    let mut file = encode(&sample()).unwrap();
    set_u32(&mut file, 3 * WRITE_PAGE_SIZE + PAGE_HEADER + 12, 5000);
    assert!(matches!(parse(&file), Err(BoltError::OutOfRange(_))));

    // A count larger than the page holds.
    let mut file = encode(&sample()).unwrap();
    file[3 * WRITE_PAGE_SIZE + 10..3 * WRITE_PAGE_SIZE + 12].copy_from_slice(&[0xff, 0xff]);
    assert!(matches!(parse(&file), Err(BoltError::OutOfRange(_))));
}

#[test]
fn elements_sharing_one_value_are_an_error() {
    // Every element of a leaf pointing at the same large value would make
    // the reader copy it once per element.
    let mut buckets = Buckets::new();
    buckets.insert(
        "b".into(),
        (0..100u8).map(|i| (vec![i + 1], vec![i; 60])).collect(),
    );
    let mut file = encode(&buckets).unwrap();
    let leaf = pages_with_flags(&file, LEAF_PAGE)
        .into_iter()
        .find(|&id| id != 3)
        .unwrap();
    let base = leaf * WRITE_PAGE_SIZE + PAGE_HEADER;
    let first_data = le_u32(&file, base + 4).unwrap() as usize;
    for i in 1..usize::from(le_u16(&file, leaf * WRITE_PAGE_SIZE + 10).unwrap()) {
        let pos = first_data - ELEMENT * i;
        set_u32(&mut file, base + ELEMENT * i + 4, pos as u32);
        set_u32(&mut file, base + ELEMENT * i + 12, 1000);
    }
    let err = parse(&file).unwrap_err();
    assert!(err.to_string().contains("need more room"), "{err}");
}

#[test]
fn a_page_pointing_at_itself_is_a_cycle() {
    let mut file = encode(&sample()).unwrap();
    let branch = pages_with_flags(&file, BRANCH_PAGE)[0];
    set_u64(
        &mut file,
        branch * WRITE_PAGE_SIZE + PAGE_HEADER + 8,
        branch as u64,
    );
    let err = parse(&file).unwrap_err();
    assert!(
        matches!(err, BoltError::Cycle(p) if p == branch as u64),
        "{err}"
    );

    // A bucket whose root is the root bucket's own page.
    let mut file = encode(&sample()).unwrap();
    let root = &file[3 * WRITE_PAGE_SIZE..4 * WRITE_PAGE_SIZE];
    let elements = leaf_elements(root, &String::new).unwrap();
    let tasks = elements.iter().find(|e| e.key == b"tasks").unwrap();
    let at = tasks.value.as_ptr() as usize - file.as_ptr() as usize;
    set_u64(&mut file, at, 3);
    assert!(matches!(parse(&file), Err(BoltError::Cycle(3))));
}

#[test]
fn a_root_past_the_high_water_mark_is_an_error() {
    let mut file = encode(&sample()).unwrap();
    let pages = (file.len() / WRITE_PAGE_SIZE) as u64;
    for page in [0, 1] {
        set_u64(&mut file, page * WRITE_PAGE_SIZE + PAGE_HEADER + 16, pages);
        reseal_meta(&mut file, page);
    }
    let err = parse(&file).unwrap_err();
    assert!(matches!(err, BoltError::OutOfRange(_)), "{err}");
    assert!(err.to_string().contains("root page"), "{err}");

    // A high-water mark past the end of the file.
    let mut file = encode(&sample()).unwrap();
    for page in [0, 1] {
        set_u64(
            &mut file,
            page * WRITE_PAGE_SIZE + PAGE_HEADER + 40,
            pages + 1,
        );
        reseal_meta(&mut file, page);
    }
    assert!(matches!(parse(&file), Err(BoltError::OutOfRange(_))));
}

#[test]
fn wrong_page_types_and_ids_are_errors() {
    // The root pointing at the freelist page, then at a meta page.
    for (target, what) in [(2, "flags 0x10"), (1, "flags 0x4")] {
        let mut file = encode(&sample()).unwrap();
        set_u64(&mut file, WRITE_PAGE_SIZE + PAGE_HEADER + 16, target);
        reseal_meta(&mut file, 1);
        let err = parse(&file).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }
    // A page whose header names another page.
    let mut file = encode(&sample()).unwrap();
    set_u64(&mut file, 3 * WRITE_PAGE_SIZE, 9);
    let err = parse(&file).unwrap_err();
    assert!(err.to_string().contains("calls itself page 9"), "{err}");
}

#[test]
fn nested_buckets_are_refused() {
    let mut buckets = Buckets::new();
    buckets.insert("outer".into(), bucket(&[(b"inner", &[0; 32])]));
    let mut file = encode(&buckets).unwrap();
    // The inline page of "outer" starts after the root leaf's one element
    // (16 bytes), its key (5) and the bucket header (16); set its first
    // element's flags to "bucket".
    let inline = 3 * WRITE_PAGE_SIZE + PAGE_HEADER + ELEMENT + 5 + BUCKET_HEADER;
    assert_eq!(le_u16(&file, inline + 8), Some(LEAF_PAGE));
    set_u32(&mut file, inline + PAGE_HEADER, BUCKET_FLAG);
    let err = parse(&file).unwrap_err();
    assert!(
        matches!(&err, BoltError::NestedBucket { bucket, key } if bucket == "outer" && key == "inner"),
        "{err}"
    );
}

#[test]
fn deep_trees_are_refused() {
    // A chain of branch pages, each with one child: deeper than any real
    // tree, and it must not exhaust the stack.
    let depth = MAX_DEPTH + 10;
    let mut file = encode(&Buckets::new()).unwrap();
    let first = 4usize;
    file.resize((first + depth + 1) * WRITE_PAGE_SIZE, 0);
    for level in 0..depth {
        let id = first + level;
        let items = [Item {
            flags: 0,
            key: b"k",
            value: &[],
            child: id as u64 + 1,
        }];
        let page = node_page(id as u64, BRANCH_PAGE, &items, WRITE_PAGE_SIZE).unwrap();
        file[id * WRITE_PAGE_SIZE..(id + 1) * WRITE_PAGE_SIZE].copy_from_slice(&page);
    }
    let leaf = node_page((first + depth) as u64, LEAF_PAGE, &[], WRITE_PAGE_SIZE).unwrap();
    file[(first + depth) * WRITE_PAGE_SIZE..].copy_from_slice(&leaf);
    let pages = (first + depth + 1) as u64;
    for page in [0, 1] {
        set_u64(
            &mut file,
            page * WRITE_PAGE_SIZE + PAGE_HEADER + 16,
            first as u64,
        );
        set_u64(&mut file, page * WRITE_PAGE_SIZE + PAGE_HEADER + 40, pages);
        reseal_meta(&mut file, page);
    }
    let err = parse(&file).unwrap_err();
    assert!(err.to_string().contains("deeper than"), "{err}");
}

// ---------------------------------------------------------------- files

#[test]
fn write_replaces_the_file_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    std::fs::write(&path, b"old").unwrap();
    write(&path, &sample()).unwrap();
    assert_eq!(read(&path).unwrap(), sample());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["agent.db"], "no temporary file is left behind");
}

#[test]
fn a_locked_file_is_in_use_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    write(&path, &sample()).unwrap();

    // What bbolt does in the Go agent: flock(LOCK_EX) for as long as the
    // database is open. Another open file description conflicts even in
    // this process.
    let holder = File::open(&path).unwrap();
    holder.lock().unwrap();
    let started = std::time::Instant::now();
    let err = read(&path).unwrap_err();
    assert!(matches!(&err, BoltError::InUse(p) if p == &path), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    let err = write(&path, &Buckets::new()).unwrap_err();
    assert!(matches!(err, BoltError::InUse(_)), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));

    // A reader's shared lock does not stop another reader.
    holder.unlock().unwrap();
    holder.lock_shared().unwrap();
    assert_eq!(read(&path).unwrap(), sample());
    drop(holder);
    write(&path, &Buckets::new()).unwrap();
    assert!(read(&path).unwrap().is_empty());
}

#[test]
fn a_missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = read(&dir.path().join("agent.db")).unwrap_err();
    assert!(matches!(err, BoltError::Io { .. }), "{err}");
    assert!(err.to_string().contains("agent.db"), "{err}");
}
