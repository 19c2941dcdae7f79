#![allow(clippy::unwrap_used)]
use super::*;
use crate::docker::NetworkDetails;
use crate::engine::task::{PortBinding, Protocol};

fn files(dir: &Path) -> MetadataFiles {
    MetadataFiles {
        data_dir: dir.to_path_buf(),
        host_prefix: None,
        cluster: "default".into(),
        instance_arn: "arn:aws:ecs:us-west-2:111122223333:container-instance/default/4f1e0c9a2b7d4e3f9a6b5c4d3e2f1a0b".into(),
        availability_zone: Some("us-west-2a".into()),
    }
}

fn subject() -> Subject {
    Subject {
        task_arn:
            "arn:aws:ecs:us-west-2:111122223333:task/default/0a1b2c3d4e5f60718293a4b5c6d7e8f9"
                .into(),
        family: "web".into(),
        revision: "7".into(),
        container_name: "app".into(),
    }
}

#[test]
fn task_part_follows_the_arn_forms() {
    assert_eq!(
        task_part("arn:aws:ecs:r:1:task/default/abc"),
        Some("default/abc")
    );
    assert_eq!(task_part("arn:aws:ecs:r:1:task/abc"), Some("abc"));
    assert_eq!(task_part("arn:aws:ecs:r:1:task"), None);
    assert_eq!(task_part("task/abc"), None);
    assert_eq!(task_part("arn:aws:ecs:r:1:task/../../etc"), None);
}

#[test]
fn first_version_has_no_status_and_the_mount_leads_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let mount = f.prepare(&subject()).unwrap();
    let host_dir = dir
        .path()
        .join("metadata/default/0a1b2c3d4e5f60718293a4b5c6d7e8f9/app");
    let (host, inside) = mount.bind.split_once(':').unwrap();
    assert_eq!(Path::new(host), host_dir);
    assert!(inside.starts_with("/opt/ecs/metadata/"));
    assert_eq!(mount.env.0, "ECS_CONTAINER_METADATA_FILE");
    assert_eq!(mount.env.1, format!("{inside}/ecs-container-metadata.json"));
    let text = std::fs::read_to_string(host_dir.join("ecs-container-metadata.json")).unwrap();
    assert!(!text.contains("MetadataFileStatus"));
    assert!(
        text.starts_with("{\n\t\"Cluster\": \"default\",\n\t\"ContainerInstanceARN\""),
        "{text}"
    );
    assert!(!text.ends_with('\n'));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(host_dir.join("ecs-container-metadata.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn final_version_matches_the_spec_example() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let details = ContainerDetails {
        name: "/ecs-web-7-app-e8c4d2b6a1f0c3e5d7b9".into(),
        image: "nginx:1.25".into(),
        image_id: "sha256:6c0e5d4b3a291807f6e5d4c3b2a19080f7e6d5c4b3a2918070f6e5d4c3b2a190".into(),
        running: true,
        networks: vec![NetworkDetails {
            name: "bridge".into(),
            ipv4: "172.17.0.4".into(),
            ipv6: String::new(),
        }],
        port_bindings: vec![PortBinding {
            container_port: 80,
            host_port: 32768,
            bind_ip: "0.0.0.0".into(),
            protocol: Protocol::Tcp,
        }],
        ..ContainerDetails::default()
    };
    f.complete(
        &subject(),
        "3f5d9c0e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e",
        &details,
    )
    .unwrap();
    let text =
        std::fs::read_to_string(dir.path().join(
            "metadata/default/0a1b2c3d4e5f60718293a4b5c6d7e8f9/app/ecs-container-metadata.json",
        ))
        .unwrap();
    // The spec's example without the host addresses (no instance metadata here).
    let expected = "{\n\t\"Cluster\": \"default\",\n\t\"ContainerInstanceARN\": \"arn:aws:ecs:us-west-2:111122223333:container-instance/default/4f1e0c9a2b7d4e3f9a6b5c4d3e2f1a0b\",\n\t\"TaskARN\": \"arn:aws:ecs:us-west-2:111122223333:task/default/0a1b2c3d4e5f60718293a4b5c6d7e8f9\",\n\t\"TaskDefinitionFamily\": \"web\",\n\t\"TaskDefinitionRevision\": \"7\",\n\t\"ContainerID\": \"3f5d9c0e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e\",\n\t\"ContainerName\": \"app\",\n\t\"DockerContainerName\": \"/ecs-web-7-app-e8c4d2b6a1f0c3e5d7b9\",\n\t\"ImageID\": \"sha256:6c0e5d4b3a291807f6e5d4c3b2a19080f7e6d5c4b3a2918070f6e5d4c3b2a190\",\n\t\"ImageName\": \"nginx:1.25\",\n\t\"PortMappings\": [\n\t\t{\n\t\t\t\"ContainerPort\": 80,\n\t\t\t\"ContainerPortRange\": \"\",\n\t\t\t\"HostPort\": 32768,\n\t\t\t\"BindIp\": \"0.0.0.0\",\n\t\t\t\"Protocol\": \"tcp\"\n\t\t}\n\t],\n\t\"Networks\": [\n\t\t{\n\t\t\t\"NetworkMode\": \"bridge\",\n\t\t\t\"IPv4Addresses\": [\n\t\t\t\t\"172.17.0.4\"\n\t\t\t]\n\t\t}\n\t],\n\t\"MetadataFileStatus\": \"READY\",\n\t\"AvailabilityZone\": \"us-west-2a\"\n}";
    assert_eq!(text, expected);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(
        dir.path()
            .join("metadata/default/0a1b2c3d4e5f60718293a4b5c6d7e8f9/app"),
    )
    .unwrap()
    .map(|e| e.unwrap().file_name())
    .collect();
    assert_eq!(names, ["ecs-container-metadata.json"]);
    f.remove_task(&subject().task_arn);
    assert!(!dir
        .path()
        .join("metadata/default/0a1b2c3d4e5f60718293a4b5c6d7e8f9")
        .exists());
}

#[test]
fn in_a_container_the_bind_source_is_the_hosts_path() {
    let dir = tempfile::tempdir().unwrap();
    let on_host = files(dir.path()).prepare(&subject()).unwrap();
    let source = on_host.bind.split_once(':').unwrap().0.to_string();
    assert!(
        source.starts_with(&dir.path().display().to_string()),
        "{source}"
    );
    let contained = MetadataFiles {
        host_prefix: Some(PathBuf::from("/var/lib/ecs")),
        ..files(dir.path())
    };
    let bind = contained.prepare(&subject()).unwrap().bind;
    let (source, _) = bind.split_once(':').unwrap();
    assert_eq!(
        source,
        format!(
            "/var/lib/ecs{}/metadata/default/0a1b2c3d4e5f60718293a4b5c6d7e8f9/app",
            dir.path().display()
        )
    );
}
