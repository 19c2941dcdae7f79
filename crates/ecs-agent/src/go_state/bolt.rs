//! Reads and writes the Go agent's `agent.db`, a bbolt database
//! (`go.etcd.io/bbolt`), without Go. Only what the Go agent uses is
//! supported: top-level buckets holding keys and values, no nested buckets.
//! Why the takeover needs this is in docs/operations.md.
//!
//! # The file format (bbolt file version 2, as of bbolt 1.4.3)
//!
//! All integers are little-endian. The file is an array of pages of one
//! size; page `n` starts at `n * page_size`. Every page starts with a
//! 16-byte header: `u64 id` (equal to `n`), `u16 flags` (exactly one of
//! branch `0x01`, leaf `0x02`, meta `0x04`, freelist `0x10`), `u16 count`
//! (elements) and `u32 overflow`: a page may run on over `overflow` more
//! pages, which then have no header of their own.
//!
//! * Pages 0 and 1 are meta pages. After the header: `u32 magic`
//!   (`0xED0CDAED`), `u32 version` (2), `u32 page_size`, `u32 flags`,
//!   `u64 root` and `u64 sequence` (the root bucket), `u64 freelist` (page
//!   id, `u64::MAX` if none), `u64 pgid` (pages in use: every page id below
//!   it is either reachable or free), `u64 txid`, `u64 checksum` (FNV-1a
//!   64 over the 56 bytes before it). A commit rewrites the meta page
//!   `txid % 2`, so the valid meta with the higher txid is the current one;
//!   the file is only unreadable when both are damaged. The page size is
//!   read from meta 0; if meta 0 is damaged, bbolt looks for meta 1 at the
//!   page sizes 1 KiB to 16 MiB.
//! * A leaf page holds `count` 16-byte elements after its header:
//!   `u32 flags` (1: the value is a bucket), `u32 pos` (where the key
//!   starts, counted from the element's own first byte), `u32 ksize`,
//!   `u32 vsize`; the value follows the key. A branch element is
//!   `u32 pos`, `u32 ksize`, `u64 child page id`, its key the first key
//!   under that child. Keys are non-empty and sorted bytewise.
//! * A bucket is a B+tree. Its value in the parent is `u64 root page`,
//!   `u64 sequence`; root 0 means "inline": a whole leaf page (header id 0)
//!   follows in the value itself. bbolt inlines a bucket that is one leaf
//!   without sub-buckets of at most `page_size / 4` bytes. The meta's root
//!   bucket holds one element per top-level bucket.
//! * A freelist page lists `count` free page ids (`u64` each); a count of
//!   `0xFFFF` means the first `u64` holds the real count.
//!
//! [`parse`] checks every offset and size against the file and every page
//! id against the meta's `pgid`, visits each page at most once (so a cycle
//! is an error) and limits the tree depth, so that a damaged file gives an
//! error and never a panic or a runaway allocation. It does not need the
//! freelist. [`encode`] writes a fresh file like the one bbolt creates for
//! a new database (metas with txid 0 and 1, an empty freelist on page 2,
//! the root bucket from page 3), with all pages full and no free pages.
//! The file is exactly as long as its pages: bbolt only requires two pages
//! and never reads past the high-water mark (it maps at least 32 KiB, but
//! its own new files are four pages long until the first commit grows
//! them).

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Top-level buckets by name, each its keys and values (sub-buckets are not
/// used by the Go agent and are refused).
pub type Buckets = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    /// No valid bbolt meta page: another format, or not a database at all.
    #[error("not a bbolt file: {0}")]
    NotBolt(String),
    /// Both meta pages are bbolt's, but neither passes its checksum.
    #[error("bbolt file damaged: both meta pages fail their checksum")]
    BadChecksum,
    /// An offset, size or page id points outside the file or the page.
    #[error("bbolt file damaged: {0} is out of range")]
    OutOfRange(String),
    /// A page is reached twice while walking the trees.
    #[error(
        "bbolt file damaged: page {0} is reached twice (a cycle, or a page shared by two parents)"
    )]
    Cycle(u64),
    /// A bucket inside a top-level bucket, which the Go agent never writes.
    #[error("bbolt file holds a bucket nested in bucket {bucket:?} (key {key:?}); the Go agent's checkpoint has none")]
    NestedBucket { bucket: String, key: String },
    /// Anything else that makes the file unreadable.
    #[error("bbolt file damaged: {0}")]
    Damaged(String),
    /// Another process holds the file's lock: the Go agent while it runs.
    #[error("{} is in use by another process (the Go agent locks it while it runs); stop that process first", .0.display())]
    InUse(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// [`encode`] was given something bbolt cannot store.
    #[error("cannot write a bbolt file: {0}")]
    Invalid(String),
}

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
/// Magic through checksum.
const META_LEN: usize = 64;
/// The bytes the checksum covers: magic through txid.
const META_SUMMED: usize = 56;
const BUCKET_HEADER: usize = 16;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
const BUCKET_FLAG: u32 = 0x01;
/// The page size [`encode`] uses. bbolt gives a new file the OS page size,
/// 4 KiB on x86_64 and most arm64 hosts, but reads the size from the meta
/// when it opens a file, so this file opens on hosts with larger pages too.
const WRITE_PAGE_SIZE: usize = 4096;
/// bbolt refuses longer keys (`MaxKeySize`).
const MAX_KEY: usize = 32_768;
/// bbolt refuses longer values (`MaxValueSize`).
const MAX_VALUE: usize = (1 << 31) - 2;
/// bbolt panics when it writes a page of 0xFFFF elements or more.
const MAX_ELEMENTS: usize = 0xFFFE;
/// A B+tree of 4 KiB pages with at least two children per branch is far
/// shallower than this for any file that fits on a disk; deeper means a
/// damaged file, and the limit keeps the recursion off the stack's end.
const MAX_DEPTH: usize = 64;

/// Parses a whole bbolt file into its top-level buckets.
pub fn parse(file: &[u8]) -> Result<Buckets, BoltError> {
    let page_size = page_size(file)?;
    let meta = current_meta(file, page_size)?;
    let pages = meta.pgid;
    let in_file = (file.len() / page_size) as u64;
    if pages > in_file {
        return Err(BoltError::OutOfRange(format!(
            "the meta's high-water mark of {pages} pages (the file holds {in_file})"
        )));
    }
    if meta.root >= pages {
        return Err(BoltError::OutOfRange(format!(
            "root page {} (high-water mark {pages})",
            meta.root
        )));
    }
    // `pages` is at most the file length over the page size, so this
    // allocation is bounded by the input.
    let mut walker = Walker {
        file,
        page_size,
        pages,
        seen: vec![false; usize::try_from(pages).unwrap_or(0)],
    };
    let mut top = Vec::new();
    walker.collect(meta.root, 0, &mut top)?;
    check_order(&top, "the root bucket")?;

    let mut buckets = Buckets::new();
    for element in top {
        let name = String::from_utf8(element.key.to_vec()).map_err(|_| {
            BoltError::Damaged(format!(
                "top-level bucket name {} is not UTF-8",
                hex::encode(element.key)
            ))
        })?;
        if element.flags & BUCKET_FLAG == 0 {
            return Err(BoltError::Damaged(format!(
                "top-level key {name:?} is not a bucket"
            )));
        }
        let entries = walker.bucket(&name, element.value)?;
        let mut keys = BTreeMap::new();
        for entry in entries {
            if entry.flags & BUCKET_FLAG != 0 {
                return Err(BoltError::NestedBucket {
                    bucket: name,
                    key: String::from_utf8_lossy(entry.key).into_owned(),
                });
            }
            keys.insert(entry.key.to_vec(), entry.value.to_vec());
        }
        buckets.insert(name, keys);
    }
    Ok(buckets)
}

/// Reads the bbolt file at `path` without writing to it. Takes a shared
/// `flock` as bbolt's read-only mode does, without waiting: while the Go
/// agent runs it holds an exclusive lock, and then this fails with
/// [`BoltError::InUse`] at once.
pub fn read(path: &Path) -> Result<Buckets, BoltError> {
    let io = |source| BoltError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(BoltError::InUse(path.to_owned())),
        Err(TryLockError::Error(source)) => return Err(io(source)),
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    // Closing the file (on drop) releases the lock.
    parse(&bytes)
}

/// Encodes `buckets` as a complete bbolt file that Go's bbolt 1.3 and 1.4
/// open, pass `tx.Check()` on, and can keep writing to.
///
/// Bucket names and keys must be 1 to 32768 bytes and values at most
/// 2^31-2 bytes, bbolt's limits. There is no limit on the number of keys:
/// large buckets are spread over as many leaf pages as needed under branch
/// pages, as bbolt lays them out.
pub fn encode(buckets: &Buckets) -> Result<Vec<u8>, BoltError> {
    let ps = WRITE_PAGE_SIZE;
    for (name, keys) in buckets {
        check_key(name.as_bytes(), || "a bucket name".to_owned())?;
        for (key, value) in keys {
            check_key(key, || format!("a key in bucket {name:?}"))?;
            if value.len() > MAX_VALUE {
                return Err(BoltError::Invalid(format!(
                    "a value in bucket {name:?} is {} bytes, more than bbolt's {MAX_VALUE}",
                    value.len()
                )));
            }
        }
    }

    // Each bucket's value in the root bucket. Its length does not depend on
    // where the bucket's pages go, so the root bucket's pages can be laid
    // out first (from page 3, as bbolt places a new database's root), and
    // the buckets' own pages after them.
    let mut values: Vec<Vec<u8>> = Vec::with_capacity(buckets.len());
    for keys in buckets.values() {
        let mut value = vec![0u8; BUCKET_HEADER];
        if inlineable(keys, ps) {
            let items: Vec<Item> = keys.iter().map(|(k, v)| Item::leaf(0, k, v)).collect();
            value.extend_from_slice(&node_page(0, LEAF_PAGE, &items, 1)?);
        }
        values.push(value);
    }
    let root_first = 3u64;
    let (_, root_pages) = build_tree(&root_items(buckets, &values), root_first, ps)?;
    let mut next = root_first + page_count(&root_pages, ps);

    let mut pages = Pages::new();
    for (keys, value) in buckets.values().zip(values.iter_mut()) {
        if value.len() > BUCKET_HEADER {
            continue; // inline
        }
        let items: Vec<Item> = keys.iter().map(|(k, v)| Item::leaf(0, k, v)).collect();
        let (root, built) = build_tree(&items, next, ps)?;
        next += page_count(&built, ps);
        value[..8].copy_from_slice(&root.to_le_bytes());
        pages.extend(built);
    }
    let (root, built) = build_tree(&root_items(buckets, &values), root_first, ps)?;
    if page_count(&built, ps) != page_count(&root_pages, ps) {
        return Err(BoltError::Invalid(
            "the root bucket's layout changed between passes".to_owned(),
        ));
    }
    pages.extend(built);

    let pgid = next;
    let total = usize::try_from(pgid)
        .ok()
        .and_then(|n| n.checked_mul(ps))
        .ok_or_else(|| BoltError::Invalid("the file would be too large".to_owned()))?;
    let mut out = vec![0u8; total];
    for txid in 0..2u64 {
        let meta = meta_page(ps, txid, root, 2, pgid);
        let at = txid as usize * ps;
        out[at..at + meta.len()].copy_from_slice(&meta);
    }
    // An empty freelist: every page below pgid is in use.
    out[2 * ps..2 * ps + PAGE_HEADER].copy_from_slice(&header(2, FREELIST_PAGE, 0, 0));
    for (id, bytes) in pages {
        let at = id as usize * ps;
        out[at..at + bytes.len()].copy_from_slice(&bytes);
    }
    Ok(out)
}

/// Writes `buckets` to `path` as a bbolt file, replacing it atomically: a
/// temporary file in the same directory (mode 0600, as the Go agent
/// creates `agent.db`) is written, synced and renamed over `path`, and the
/// directory is synced so the rename survives a crash. Refuses with
/// [`BoltError::InUse`] while another process holds a lock on the old file.
pub fn write(path: &Path, buckets: &Buckets) -> Result<(), BoltError> {
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = encode(buckets)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BoltError::Io { path, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| BoltError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
    })?;

    // A running Go agent holds this lock: never replace the file under it.
    // Kept until the rename, so no bbolt user can start on the old file in
    // between and write to it after it is gone.
    let _old = match File::open(path) {
        Ok(old) => match old.try_lock() {
            Ok(()) => Some(old),
            Err(TryLockError::WouldBlock) => return Err(BoltError::InUse(path.to_owned())),
            Err(TryLockError::Error(source)) => return Err(io(path)(source)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(path)(e)),
    };

    let mut temp_name = name.to_owned();
    temp_name.push(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io(&temp))?;
        file.write_all(&bytes).map_err(io(&temp))?;
        file.sync_all().map_err(io(&temp))?;
        std::fs::rename(&temp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

// ---------------------------------------------------------------- reading

struct Meta {
    page_size: u32,
    root: u64,
    pgid: u64,
    txid: u64,
}

/// The meta at byte `at`, validated as bbolt does (magic, version,
/// checksum); `None` if the file is too short to hold it.
fn meta_at(file: &[u8], at: usize) -> Option<Result<Meta, BoltError>> {
    let start = at.checked_add(PAGE_HEADER)?;
    let bytes = file.get(start..start.checked_add(META_LEN)?)?;
    let magic = le_u32(bytes, 0)?;
    let version = le_u32(bytes, 4)?;
    let checked = if magic != MAGIC {
        Err(BoltError::NotBolt(
            "no bbolt magic number in the meta page".to_owned(),
        ))
    } else if version != VERSION {
        Err(BoltError::NotBolt(format!(
            "file format version {version}, expected {VERSION}"
        )))
    } else if le_u64(bytes, META_SUMMED)? != fnv1a64(&bytes[..META_SUMMED]) {
        Err(BoltError::BadChecksum)
    } else {
        Ok(Meta {
            page_size: le_u32(bytes, 8)?,
            root: le_u64(bytes, 16)?,
            pgid: le_u64(bytes, 40)?,
            txid: le_u64(bytes, 48)?,
        })
    };
    Some(checked)
}

/// The page size, found as bbolt finds it: from meta 0, else from the first
/// valid meta 1 at 1 KiB, 2 KiB, ... 16 MiB.
fn page_size(file: &[u8]) -> Result<usize, BoltError> {
    let mut first_error = None;
    for at in std::iter::once(0).chain((0..=14).map(|i| 1024usize << i)) {
        match meta_at(file, at) {
            Some(Ok(meta)) => {
                let ps = meta.page_size as usize;
                if ps < PAGE_HEADER + META_LEN {
                    return Err(BoltError::Damaged(format!(
                        "page size {ps}, too small for a meta page"
                    )));
                }
                if file.len() / 2 < ps {
                    return Err(BoltError::OutOfRange(format!(
                        "the second meta page (page size {ps}, file {} bytes)",
                        file.len()
                    )));
                }
                return Ok(ps);
            }
            // Report what was wrong with meta 0 unless a later probe finds
            // a damaged bbolt meta, which says more than "no magic".
            Some(Err(e)) => match (&first_error, &e) {
                (None, _) | (Some(BoltError::NotBolt(_)), BoltError::BadChecksum) => {
                    first_error = Some(e)
                }
                _ => {}
            },
            None => break,
        }
    }
    Err(first_error
        .unwrap_or_else(|| BoltError::NotBolt(format!("{} bytes is too short", file.len()))))
}

/// The current meta: the valid one with the higher txid.
fn current_meta(file: &[u8], page_size: usize) -> Result<Meta, BoltError> {
    let short = || BoltError::OutOfRange("the second meta page".to_owned());
    let meta0 = meta_at(file, 0).ok_or_else(short)?;
    let meta1 = meta_at(file, page_size).ok_or_else(short)?;
    match (meta0, meta1) {
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
        (Ok(m), Err(_)) | (Err(_), Ok(m)) => Ok(m),
        (Err(e), Err(_)) => Err(e),
    }
}

#[derive(Clone, Copy)]
struct Element<'a> {
    flags: u32,
    key: &'a [u8],
    value: &'a [u8],
}

struct Walker<'a> {
    file: &'a [u8],
    page_size: usize,
    pages: u64,
    /// Pages already visited, including overflow pages.
    seen: Vec<bool>,
}

impl<'a> Walker<'a> {
    /// The bytes of page `id` with its overflow, checked to be a branch or
    /// leaf page that lies in the file and was not visited before.
    fn page(&mut self, id: u64) -> Result<&'a [u8], BoltError> {
        if id >= self.pages {
            return Err(BoltError::OutOfRange(format!(
                "page id {id} (high-water mark {})",
                self.pages
            )));
        }
        // id < pages <= file length / page size, so this cannot overflow.
        let start = id as usize * self.page_size;
        let head = self
            .file
            .get(start..start + PAGE_HEADER)
            .ok_or_else(|| BoltError::OutOfRange(format!("page {id}")))?;
        let (own_id, flags, overflow) = (
            le_u64(head, 0).unwrap_or(u64::MAX),
            le_u16(head, 8).unwrap_or(0),
            le_u32(head, 12).unwrap_or(u32::MAX),
        );
        if own_id != id {
            return Err(BoltError::Damaged(format!(
                "page {id} calls itself page {own_id}"
            )));
        }
        if flags != BRANCH_PAGE && flags != LEAF_PAGE {
            return Err(BoltError::Damaged(format!(
                "page {id} has flags {flags:#x} where a branch or leaf page belongs"
            )));
        }
        let end = id + u64::from(overflow) + 1;
        if end > self.pages {
            return Err(BoltError::OutOfRange(format!(
                "page {id} with {overflow} overflow pages (high-water mark {})",
                self.pages
            )));
        }
        for p in id..end {
            let seen = &mut self.seen[p as usize];
            if *seen {
                return Err(BoltError::Cycle(p));
            }
            *seen = true;
        }
        let len = (end - id) as usize * self.page_size;
        self.file
            .get(start..start + len)
            .ok_or_else(|| BoltError::OutOfRange(format!("page {id}")))
    }

    /// Appends the leaf elements of the tree under page `id` to `out`.
    fn collect(
        &mut self,
        id: u64,
        depth: usize,
        out: &mut Vec<Element<'a>>,
    ) -> Result<(), BoltError> {
        if depth > MAX_DEPTH {
            return Err(BoltError::Damaged(format!(
                "a tree deeper than {MAX_DEPTH} levels at page {id}"
            )));
        }
        let page = self.page(id)?;
        let what = || format!("page {id}");
        if le_u16(page, 8) == Some(LEAF_PAGE) {
            out.extend(leaf_elements(page, &what)?);
            return Ok(());
        }
        let children = branch_elements(page, &what)?;
        for child in children {
            self.collect(child, depth + 1, out)?;
        }
        Ok(())
    }

    /// The entries of the bucket whose value in the root bucket is `value`.
    fn bucket(&mut self, name: &str, value: &'a [u8]) -> Result<Vec<Element<'a>>, BoltError> {
        let what = || format!("bucket {name:?}");
        let root = le_u64(value, 0).ok_or_else(|| {
            BoltError::Damaged(format!(
                "{}: a bucket value of {} bytes",
                what(),
                value.len()
            ))
        })?;
        let entries = if root == 0 {
            let page = value.get(BUCKET_HEADER..).unwrap_or_default();
            let flags = le_u16(page, 8)
                .ok_or_else(|| BoltError::OutOfRange(format!("the inline page of {}", what())))?;
            if flags != LEAF_PAGE {
                return Err(BoltError::Damaged(format!(
                    "{}: inline page with flags {flags:#x}",
                    what()
                )));
            }
            leaf_elements(page, &what)?
        } else {
            let mut out = Vec::new();
            self.collect(root, 0, &mut out)?;
            out
        };
        check_order(&entries, &what())?;
        Ok(entries)
    }
}

/// The `count` field and the byte after the element array of `page`,
/// checked to lie in it.
fn elements_end(page: &[u8], what: &dyn Fn() -> String) -> Result<(usize, usize), BoltError> {
    let count = usize::from(le_u16(page, 10).unwrap_or(0));
    let end = PAGE_HEADER + ELEMENT * count;
    if end > page.len() {
        return Err(BoltError::OutOfRange(format!(
            "the {count} elements of {} ({} bytes)",
            what(),
            page.len()
        )));
    }
    Ok((count, end))
}

/// The bytes `[base + pos, base + pos + len)` of `page`, where `base` is
/// an element's offset.
fn slice_at<'a>(
    page: &'a [u8],
    base: usize,
    pos: u32,
    len: u64,
    element: usize,
    what: &dyn Fn() -> String,
) -> Result<&'a [u8], BoltError> {
    let start = base as u64 + u64::from(pos);
    let end = start + len;
    if end > page.len() as u64 {
        return Err(BoltError::OutOfRange(format!(
            "element {element} of {} (bytes {start}..{end} of {})",
            what(),
            page.len()
        )));
    }
    Ok(&page[start as usize..end as usize])
}

fn leaf_elements<'a>(
    page: &'a [u8],
    what: &dyn Fn() -> String,
) -> Result<Vec<Element<'a>>, BoltError> {
    let (count, end) = elements_end(page, what)?;
    // Keys and values never overlap in a page bbolt wrote, so together they
    // fit in what the element array leaves. Checking it keeps a damaged
    // page whose elements all point at one large value from making us copy
    // it thousands of times.
    let budget = (page.len() - end) as u64;
    let mut used = 0u64;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let base = PAGE_HEADER + ELEMENT * i;
        let field = |n: usize| le_u32(page, base + 4 * n).unwrap_or(0);
        let (flags, pos, ksize, vsize) = (field(0), field(1), field(2), field(3));
        let both = slice_at(
            page,
            base,
            pos,
            u64::from(ksize) + u64::from(vsize),
            i,
            what,
        )?;
        used += u64::from(ksize) + u64::from(vsize);
        if used > budget {
            return Err(BoltError::Damaged(format!(
                "the keys and values of {} need more room than it has",
                what()
            )));
        }
        let (key, value) = both.split_at(ksize as usize);
        if key.is_empty() {
            return Err(BoltError::Damaged(format!(
                "element {i} of {} has an empty key",
                what()
            )));
        }
        out.push(Element { flags, key, value });
    }
    Ok(out)
}

/// The child page ids of a branch page, checked for sorted non-empty keys.
fn branch_elements(page: &[u8], what: &dyn Fn() -> String) -> Result<Vec<u64>, BoltError> {
    let (count, _) = elements_end(page, what)?;
    if count == 0 {
        return Err(BoltError::Damaged(format!(
            "{} is a branch page without children",
            what()
        )));
    }
    let mut children = Vec::with_capacity(count);
    let mut previous: Option<&[u8]> = None;
    for i in 0..count {
        let base = PAGE_HEADER + ELEMENT * i;
        let pos = le_u32(page, base).unwrap_or(0);
        let ksize = le_u32(page, base + 4).unwrap_or(0);
        let key = slice_at(page, base, pos, u64::from(ksize), i, what)?;
        if key.is_empty() || previous.is_some_and(|p| p >= key) {
            return Err(BoltError::Damaged(format!(
                "the keys of branch {} are empty or out of order",
                what()
            )));
        }
        previous = Some(key);
        children.push(le_u64(page, base + 8).unwrap_or(0));
    }
    Ok(children)
}

/// Keys must rise strictly across a whole tree: a duplicate or an
/// out-of-order key means pages were mixed up.
fn check_order(elements: &[Element<'_>], what: &str) -> Result<(), BoltError> {
    match elements.windows(2).position(|w| w[0].key >= w[1].key) {
        Some(i) => Err(BoltError::Damaged(format!(
            "the keys of {what} are out of order at key {}",
            i + 1
        ))),
        None => Ok(()),
    }
}

fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// FNV-1a, 64 bits: bbolt's meta checksum (Go's `hash/fnv` `New64a`).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// ---------------------------------------------------------------- writing

fn check_key(key: &[u8], what: impl Fn() -> String) -> Result<(), BoltError> {
    if key.is_empty() {
        return Err(BoltError::Invalid(format!("{} is empty", what())));
    }
    if key.len() > MAX_KEY {
        return Err(BoltError::Invalid(format!(
            "{} is {} bytes, more than bbolt's {MAX_KEY}",
            what(),
            key.len()
        )));
    }
    Ok(())
}

/// bbolt's rule for storing a bucket inside its parent's value: one leaf
/// (no sub-buckets here) of at most a quarter page. Following it keeps the
/// file the way bbolt itself would have written it.
fn inlineable(keys: &BTreeMap<Vec<u8>, Vec<u8>>, page_size: usize) -> bool {
    let mut size = PAGE_HEADER;
    for (k, v) in keys {
        size += ELEMENT + k.len() + v.len();
        if size > page_size / 4 {
            return false;
        }
    }
    true
}

/// One element of a page to write: a leaf entry, or a branch's child.
struct Item<'a> {
    flags: u32,
    key: &'a [u8],
    value: &'a [u8],
    child: u64,
}

impl<'a> Item<'a> {
    fn leaf(flags: u32, key: &'a [u8], value: &'a [u8]) -> Self {
        Item {
            flags,
            key,
            value,
            child: 0,
        }
    }

    fn size(&self) -> usize {
        ELEMENT + self.key.len() + self.value.len()
    }
}

fn header(id: u64, flags: u16, count: u16, overflow: u32) -> [u8; PAGE_HEADER] {
    let mut h = [0u8; PAGE_HEADER];
    h[..8].copy_from_slice(&id.to_le_bytes());
    h[8..10].copy_from_slice(&flags.to_le_bytes());
    h[10..12].copy_from_slice(&count.to_le_bytes());
    h[12..].copy_from_slice(&overflow.to_le_bytes());
    h
}

/// A branch or leaf page holding `items`, padded to whole pages of
/// `page_size` with `overflow` set (`page_size` 1: not padded, for an
/// inline bucket).
fn node_page(id: u64, flags: u16, items: &[Item], page_size: usize) -> Result<Vec<u8>, BoltError> {
    let too_big = || BoltError::Invalid("a page would be too large".to_owned());
    let count = u16::try_from(items.len())
        .ok()
        .filter(|&c| usize::from(c) <= MAX_ELEMENTS)
        .ok_or_else(too_big)?;
    let size = PAGE_HEADER + items.iter().map(Item::size).sum::<usize>();
    let pages = size.div_ceil(page_size);
    let overflow = if page_size == 1 {
        0
    } else {
        u32::try_from(pages - 1).map_err(|_| too_big())?
    };
    let mut out = Vec::with_capacity(pages * page_size);
    out.extend_from_slice(&header(id, flags, count, overflow));
    let mut data = PAGE_HEADER + ELEMENT * items.len();
    for (i, item) in items.iter().enumerate() {
        let base = PAGE_HEADER + ELEMENT * i;
        let pos = u32::try_from(data - base).map_err(|_| too_big())?;
        let ksize = u32::try_from(item.key.len()).map_err(|_| too_big())?;
        if flags == LEAF_PAGE {
            let vsize = u32::try_from(item.value.len()).map_err(|_| too_big())?;
            for field in [item.flags, pos, ksize, vsize] {
                out.extend_from_slice(&field.to_le_bytes());
            }
        } else {
            out.extend_from_slice(&pos.to_le_bytes());
            out.extend_from_slice(&ksize.to_le_bytes());
            out.extend_from_slice(&item.child.to_le_bytes());
        }
        data += item.key.len() + item.value.len();
    }
    for item in items {
        out.extend_from_slice(item.key);
        out.extend_from_slice(item.value);
    }
    out.resize(pages * page_size, 0);
    Ok(out)
}

/// Splits `items` into runs that each fit one page, or hold a single item
/// too large for one (that page then overflows).
fn chunks(items: &[Item], page_size: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, PAGE_HEADER);
    for (i, item) in items.iter().enumerate() {
        if i > start && (size + item.size() > page_size || i - start == MAX_ELEMENTS) {
            out.push(start..i);
            (start, size) = (i, PAGE_HEADER);
        }
        size += item.size();
    }
    out.push(start..items.len());
    out
}

/// Pages to write, each with its id (its overflow pages included).
type Pages = Vec<(u64, Vec<u8>)>;

/// Lays out the B+tree of one bucket from page `first` on: full leaf pages
/// in key order, then levels of branch pages over them until one page
/// remains, the root. Returns the root's id and the pages with their ids.
/// The layout depends only on the sizes of the items.
fn build_tree(items: &[Item], first: u64, page_size: usize) -> Result<(u64, Pages), BoltError> {
    let mut next = first;
    let mut pages = Vec::new();
    // (first key, page id) of each node of the level just written.
    let mut level: Vec<(&[u8], u64)> = Vec::new();
    for range in chunks(items, page_size) {
        let id = next;
        let page = node_page(id, LEAF_PAGE, &items[range.clone()], page_size)?;
        next += (page.len() / page_size) as u64;
        level.push((items.get(range.start).map_or(&[][..], |i| i.key), id));
        pages.push((id, page));
    }
    while level.len() > 1 {
        let branch: Vec<Item> = level
            .iter()
            .map(|&(key, child)| Item {
                flags: 0,
                key,
                value: &[],
                child,
            })
            .collect();
        let mut upper = Vec::new();
        for range in chunks(&branch, page_size) {
            let id = next;
            let page = node_page(id, BRANCH_PAGE, &branch[range.clone()], page_size)?;
            next += (page.len() / page_size) as u64;
            upper.push((branch[range.start].key, id));
            pages.push((id, page));
        }
        level = upper;
    }
    Ok((level[0].1, pages))
}

/// The root bucket's elements: each bucket's name and value.
fn root_items<'a>(buckets: &'a Buckets, values: &'a [Vec<u8>]) -> Vec<Item<'a>> {
    buckets
        .keys()
        .zip(values)
        .map(|(name, value)| Item::leaf(BUCKET_FLAG, name.as_bytes(), value))
        .collect()
}

fn page_count(pages: &[(u64, Vec<u8>)], page_size: usize) -> u64 {
    pages
        .iter()
        .map(|(_, p)| (p.len() / page_size) as u64)
        .sum()
}

/// Meta page `txid % 2` of a file whose root bucket is at `root`.
fn meta_page(page_size: usize, txid: u64, root: u64, freelist: u64, pgid: u64) -> Vec<u8> {
    let mut page = header(txid % 2, META_PAGE, 0, 0).to_vec();
    page.extend_from_slice(&MAGIC.to_le_bytes());
    page.extend_from_slice(&VERSION.to_le_bytes());
    page.extend_from_slice(&(page_size as u32).to_le_bytes());
    page.extend_from_slice(&0u32.to_le_bytes()); // flags
    page.extend_from_slice(&root.to_le_bytes());
    page.extend_from_slice(&0u64.to_le_bytes()); // root bucket sequence
    page.extend_from_slice(&freelist.to_le_bytes());
    page.extend_from_slice(&pgid.to_le_bytes());
    page.extend_from_slice(&txid.to_le_bytes());
    let sum = fnv1a64(&page[PAGE_HEADER..]);
    page.extend_from_slice(&sum.to_le_bytes());
    page
}
