#![allow(clippy::unwrap_used)]
use serde_json::json;

use super::*;

fn fixture(name: &str) -> Kernel {
    fixture_kernel(name)
}

/// `MemTotal` of the fixtures' meminfo, in bytes.
const FIXTURE_MEM_TOTAL: u64 = 24_683_784 * 1024;

#[test]
fn cgroup_v1_as_a_docker_host_lays_it_out() {
    let kernel = fixture("v1");
    assert_eq!(kernel.version(), CgroupVersion::V1);
    let r = kernel.read(4242, true).unwrap();
    // Captured from a running container next to Docker's own stats of it.
    assert_eq!(r.cpu.total_ns, 33_985_648);
    assert_eq!(r.cpu.percpu_ns, [26_792_903, 7_192_745]);
    assert_eq!((r.cpu.user_ns, r.cpu.system_ns), (10_000_000, 10_000_000));
    assert_eq!(r.memory.usage, 6_242_304);
    assert_eq!(r.memory.max_usage, Some(7_671_808));
    assert_eq!(r.memory.limit, 67_108_864);
    assert_eq!(r.memory.stats()["total_inactive_file"], 5_242_880);
    assert_eq!(r.memory.cache(), 5_386_240);
    assert_eq!(r.memory.in_use(), 6_242_304 - 5_386_240);
    assert_eq!(
        (r.blkio.read_bytes(), r.blkio.write_bytes()),
        (40_960, 8_192)
    );
    assert_eq!(
        r.blkio.service_bytes.len(),
        6,
        "a device's Total is kept, as Docker keeps it; the last line is not"
    );
    assert_eq!(r.pids, Some(1));
    let networks = r.networks.as_ref().unwrap();
    assert_eq!(networks.keys().collect::<Vec<_>>(), ["eth0"], "lo left out");
    assert_eq!(
        (networks["eth0"].rx_bytes, networks["eth0"].rx_packets),
        (806, 9)
    );
    // 937001+0+297170+1390580+9586+0+4127 ticks of 10 ms.
    assert_eq!(r.system_cpu_ns, 2_638_464 * 10_000_000);
    assert_eq!(r.online_cpus, 2);
}

#[test]
fn cgroup_v2_with_the_systemd_driver() {
    let kernel = fixture("v2");
    assert_eq!(kernel.version(), CgroupVersion::V2);
    let r = kernel.read(4242, true).unwrap();
    assert_eq!(r.cpu.total_ns, 1_500_000_000);
    assert!(r.cpu.percpu_ns.is_empty(), "v2 has no per-CPU usage");
    assert_eq!(
        (r.cpu.user_ns, r.cpu.system_ns),
        (1_000_000_000, 500_000_000)
    );
    assert_eq!(
        (r.cpu.periods, r.cpu.throttled_periods, r.cpu.throttled_ns),
        (20, 3, 120_000_000)
    );
    assert_eq!(r.memory.usage, 10_485_760);
    assert_eq!(r.memory.max_usage, Some(12_582_912));
    assert_eq!(
        r.memory.limit, FIXTURE_MEM_TOTAL,
        "`max` is the host's memory"
    );
    assert_eq!(r.memory.cache(), 2_097_152, "inactive_file on v2");
    assert_eq!(r.memory.in_use(), 10_485_760 - 2_097_152);
    assert_eq!(r.blkio.read_bytes(), 40_960 + 4_096);
    assert_eq!(r.blkio.write_bytes(), 8_192);
    assert_eq!(r.blkio.serviced.len(), 4);
    assert_eq!(r.pids, Some(3));
}

#[test]
fn host_network_containers_have_no_interfaces() {
    let r = fixture("v1").read(4242, false).unwrap();
    assert_eq!(r.networks, None);
    assert_eq!(r.network_totals(), None);
}

#[test]
fn a_process_that_is_gone_is_an_error_not_a_panic() {
    let e = fixture("v1").read(1, true).unwrap_err();
    assert!(matches!(e, MetricsError::Io { .. }), "{e}");
}

#[test]
fn the_docker_shape_matches_dockers_own_stats_of_the_captured_container() {
    let kernel = fixture("v1");
    let now = kernel.read(4242, true).unwrap();
    let mut before = now.clone();
    before.cpu.total_ns -= 1_000_000;
    before.system_cpu_ns -= 2_000_000_000;
    let v = docker_stats(&now, Some(&before), "4558af8c27b0", "brave_mestorf");
    // The figures Docker 20.10 printed for the same container when the
    // fixture was captured (its network counters were copied a moment
    // later, after one more packet).
    assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 33_985_648);
    assert_eq!(
        v["cpu_stats"]["cpu_usage"]["percpu_usage"],
        json!([26_792_903, 7_192_745])
    );
    assert_eq!(
        v["cpu_stats"]["cpu_usage"]["usage_in_kernelmode"],
        10_000_000
    );
    assert_eq!(v["cpu_stats"]["online_cpus"], 2);
    assert_eq!(
        v["cpu_stats"]["throttling_data"],
        json!({"periods": 0, "throttled_periods": 0, "throttled_time": 0})
    );
    assert_eq!(v["precpu_stats"]["cpu_usage"]["total_usage"], 32_985_648);
    assert_eq!(v["memory_stats"]["usage"], 6_242_304);
    assert_eq!(v["memory_stats"]["max_usage"], 7_671_808);
    assert_eq!(v["memory_stats"]["limit"], 67_108_864);
    assert_eq!(v["memory_stats"]["stats"]["cache"], 5_386_240);
    assert_eq!(v["pids_stats"], json!({"current": 1}));
    assert_eq!(
        v["networks"]["eth0"],
        json!({"rx_bytes": 806, "rx_packets": 9, "rx_errors": 0, "rx_dropped": 0,
               "tx_bytes": 0, "tx_packets": 0, "tx_errors": 0, "tx_dropped": 0})
    );
    assert_eq!(
        v["blkio_stats"]["io_service_bytes_recursive"][0],
        json!({"major": 254, "minor": 0, "op": "Read", "value": 40_960})
    );
    assert_eq!(v["name"], "/brave_mestorf");
    assert_eq!(v["id"], "4558af8c27b0");
    let read = v["read"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(read, &time::format_description::well_known::Rfc3339).is_ok(),
        "{read}"
    );
    // Without an earlier reading, precpu is Docker's zeros.
    let first = docker_stats(&now, None, "4558af8c27b0", "brave_mestorf");
    assert_eq!(first["preread"], "0001-01-01T00:00:00Z");
    assert_eq!(first["precpu_stats"]["cpu_usage"]["total_usage"], 0);
}

#[test]
fn parsers_refuse_bad_text_with_a_reason() {
    assert_eq!(parse::single("max\n"), Ok(None));
    assert_eq!(parse::single(" 42\n"), Ok(Some(42)));
    assert!(parse::single("lots").is_err());
    assert!(parse::numbers("1 2 x").is_err());
    assert!(parse::blkio_v1("8:0 Read\n").is_err());
    assert!(parse::blkio_v1("eight Read 1\n").is_err());
    assert!(parse::io_stat_v2("8:0 rbytes\n").is_err());
    assert!(parse::system_cpu_ns("cpu0 1 2 3", 100).is_err());
    assert!(parse::system_cpu_ns("cpu 1 2 x", 100).is_err());
    assert_eq!(
        parse::system_cpu_ns("cpu  1 2 3 4 5 6 7 8 9 10\n", 100),
        Ok(28 * 10_000_000)
    );
    // Unknown or non-numeric keys are skipped, not fatal.
    let m = parse::flat_keyed("a 1\nb x\n\nc 3 extra\n");
    assert_eq!(m.len(), 2);
}

fn reading_after(base: &Reading, seconds: i64, cpu_ns: u64, rx: u64) -> Reading {
    let mut r = base.clone();
    r.at = base.at + time::Duration::seconds(seconds);
    r.cpu.total_ns = base.cpu.total_ns + cpu_ns;
    r.networks
        .as_mut()
        .unwrap()
        .get_mut("eth0")
        .unwrap()
        .rx_bytes = rx;
    r
}

#[test]
fn cpu_is_a_share_of_the_whole_host_between_two_readings() {
    let r0 = fixture("v1").read(4242, true).unwrap();
    // One full CPU for 2 s on a 2-CPU host: half the host.
    let r1 = reading_after(&r0, 2, 2_000_000_000, 806);
    assert_eq!(stat_sets::cpu_percent(&r0, &r1), Some(50.0));
    assert_eq!(stat_sets::cpu_percent(&r1, &r0), None, "time went back");
    let r2 = reading_after(&r0, 4, 0, 806 + 4096);
    assert_eq!(stat_sets::network_rates(&r0, &r2), Some((1024.0, 0.0)));
}

#[test]
fn a_container_is_published_once_it_has_two_readings_then_starts_again() {
    let r0 = fixture("v1").read(4242, true).unwrap();
    let mut sets = stat_sets::ContainerSets::default();
    sets.add(&r0, None);
    assert_eq!(sets.take("app"), None, "one reading: no CPU yet");
    let r1 = reading_after(&r0, 1, 200_000_000, 806);
    sets.add(&r1, Some(&r0));
    let r2 = reading_after(&r1, 1, 600_000_000, 806 + 100);
    sets.add(&r2, Some(&r1));
    let m = sets.take("app").unwrap();
    assert_eq!(m.container_name.as_deref(), Some("app"));
    let cpu = m.cpu_stats_set.unwrap();
    assert_eq!(
        (cpu.min, cpu.max, cpu.sample_count),
        (Some(10.0), Some(30.0), Some(2))
    );
    assert_eq!(cpu.sum, Some(40.0));
    let memory = m.memory_stats_set.unwrap();
    // (6242304 - 5386240) bytes is 0 whole MiB, three times.
    assert_eq!((memory.max, memory.sample_count), (Some(0.0), Some(3)));
    let storage = m.storage_stats_set.unwrap();
    let read = storage.read_size_bytes.unwrap();
    assert_eq!(
        (read.min, read.sum, read.overflow_sum),
        (Some(40_960), Some(3 * 40_960), Some(0))
    );
    let net = m.network_stats_set.unwrap();
    assert_eq!(net.rx_bytes.unwrap().max, Some(906));
    let rate = net.rx_bytes_per_second.unwrap();
    assert_eq!(
        (rate.min, rate.max, rate.sample_count),
        (Some(0.0), Some(100.0), Some(2))
    );
    assert_eq!(sets.take("app"), None, "published: the sets start again");
}

#[test]
fn counters_past_i64_max_use_the_overflow_fields() {
    let cap = i64::MAX as u128;
    assert_eq!(stat_sets::split_overflow(5), (5, 0));
    assert_eq!(stat_sets::split_overflow(cap), (i64::MAX, 0));
    assert_eq!(stat_sets::split_overflow(cap + 7), (i64::MAX, 7));
    let mut set = stat_sets::CounterSet::default();
    set.push(u64::MAX);
    set.push(u64::MAX);
    let s = set.ulong();
    assert_eq!((s.max, s.overflow_max), (Some(i64::MAX), Some(1)));
    assert_eq!(s.sample_count, Some(2));
    let sum = 2 * u128::from(u64::MAX);
    assert_eq!(s.overflow_sum, Some((sum % cap) as i64));
}

fn target(task: &str, name: &str, id: &str) -> Target {
    Target {
        task_arn: task.into(),
        family: "web".into(),
        version: "3".into(),
        container_name: name.into(),
        docker_id: id.into(),
        docker_name: format!("ecs-web-{name}"),
        pid: 4242,
        own_network: true,
    }
}

#[test]
fn the_collector_groups_by_task_and_forgets_what_is_no_longer_listed() {
    let collector = Collector::new(fixture("v1"), STREAM_INTERVAL);
    let both = [
        target("t1", "b", "id-b"),
        target("t1", "a", "id-a"),
        target("t2", "c", "id-c"),
    ];
    collector.collect(&both);
    assert!(collector.take_task_metrics().is_empty(), "one reading each");
    // The fixture's CPU figure does not move, but a second reading gives a
    // (zero) CPU utilisation.
    std::thread::sleep(std::time::Duration::from_millis(5));
    collector.collect(&both);
    let tasks = collector.take_task_metrics();
    assert_eq!(tasks.keys().collect::<Vec<_>>(), ["t1", "t2"]);
    let names: Vec<_> = tasks["t1"]
        .containers
        .iter()
        .map(|c| c.container_name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        (tasks["t1"].family.as_str(), tasks["t1"].version.as_str()),
        ("web", "3")
    );
    assert_eq!(collector.followed(), 3);
    collector.collect(&both[..1]);
    assert_eq!(collector.followed(), 1, "stopped containers are forgotten");
    // A process that is gone is skipped, not fatal.
    let mut gone = target("t3", "d", "id-d");
    gone.pid = 1;
    collector.collect(&[gone]);
    assert_eq!(collector.followed(), 0);
}

/// After a burst of containers has gone, the table of series shrinks, so
/// its room (about 1.3 KiB a series) is not kept.
#[test]
fn the_collector_gives_back_room_once_containers_are_gone() {
    let collector = Collector::new(fixture("v1"), STREAM_INTERVAL);
    let many: Vec<Target> = (0..100)
        .map(|i| target(&format!("t{i}"), "a", &format!("id-{i}")))
        .collect();
    collector.collect(&many);
    assert_eq!(collector.followed(), 100);
    assert!(collector.room() >= 100);
    collector.collect(&many[..2]);
    assert_eq!(collector.followed(), 2);
    assert!(collector.room() <= 8, "room for {}", collector.room());
    collector.collect(&[]);
    assert_eq!(collector.room(), 0);
}
