//! ARNs of the plane's resources: building them from the account and region,
//! and reading names and ids back out of whatever form a caller sent
//! (short name, id, or full ARN).

use rand::RngCore;

/// The account id every ARN of the local plane carries.
pub const ACCOUNT_ID: &str = "000000000000";

/// Builds ARNs for one region of the local account.
#[derive(Debug, Clone)]
pub struct ArnBuilder {
    region: String,
    account: String,
}

impl ArnBuilder {
    pub fn new(region: &str) -> Self {
        Self {
            region: region.to_owned(),
            account: ACCOUNT_ID.to_owned(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    fn prefix(&self) -> String {
        format!("arn:aws:ecs:{}:{}", self.region, self.account)
    }

    pub fn cluster(&self, name: &str) -> String {
        format!("{}:cluster/{name}", self.prefix())
    }

    pub fn task_definition(&self, family: &str, revision: i64) -> String {
        format!("{}:task-definition/{family}:{revision}", self.prefix())
    }

    pub fn container_instance(&self, cluster: &str, id: &str) -> String {
        format!("{}:container-instance/{cluster}/{id}", self.prefix())
    }

    pub fn service(&self, cluster: &str, name: &str) -> String {
        format!("{}:service/{cluster}/{name}", self.prefix())
    }

    pub fn task(&self, cluster: &str, id: &str) -> String {
        format!("{}:task/{cluster}/{id}", self.prefix())
    }

    pub fn container(&self, cluster: &str, task_id: &str, container_id: &str) -> String {
        format!(
            "{}:container/{cluster}/{task_id}/{container_id}",
            self.prefix()
        )
    }
}

/// A fresh resource id: 32 lowercase hex characters, as ECS uses for tasks
/// and container instances.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The resource part of an ARN (`cluster/x`, `task/c/id`), or `None` if the
/// text is not an ARN.
fn resource_part(text: &str) -> Option<&str> {
    if !text.starts_with("arn:") {
        return None;
    }
    // arn:partition:service:region:account:resource; the resource may itself
    // contain ':' (task-definition/family:rev), so split only five times.
    text.splitn(6, ':').nth(5)
}

/// The cluster name in a cluster parameter: `demo` or
/// `arn:aws:ecs:r:a:cluster/demo`. A missing or empty parameter is `default`.
pub fn cluster_name(param: Option<&str>) -> String {
    let text = param.map(str::trim).unwrap_or("");
    if text.is_empty() {
        return "default".to_owned();
    }
    match resource_part(text) {
        Some(resource) => resource
            .strip_prefix("cluster/")
            .unwrap_or(resource)
            .to_owned(),
        None => text.to_owned(),
    }
}

/// The id (last path segment) of a task or container instance given as an
/// id or as an ARN in its old (`task/id`) or new (`task/cluster/id`) form.
pub fn resource_id(param: &str) -> &str {
    let text = param.trim();
    match resource_part(text) {
        Some(resource) => resource.rsplit('/').next().unwrap_or(resource),
        None => text,
    }
}

/// The cluster name inside a new-style task or container instance ARN
/// (`…:task/cluster/id`), if it has one.
pub fn cluster_of(arn: &str) -> Option<&str> {
    let resource = resource_part(arn)?;
    let mut parts = resource.split('/');
    let _kind = parts.next()?;
    let first = parts.next()?;
    parts.next().map(|_| first)
}

/// A task definition reference: `family`, `family:revision`, or an ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefinitionRef {
    pub family: String,
    pub revision: Option<i64>,
}

/// Parses a task definition reference. Returns `None` when the text is empty
/// or the revision is not a positive number.
pub fn task_definition_ref(param: &str) -> Option<TaskDefinitionRef> {
    let text = param.trim();
    let body = match resource_part(text) {
        Some(resource) => resource.strip_prefix("task-definition/")?,
        None => text,
    };
    let (family, revision) = match body.rsplit_once(':') {
        Some((family, rev)) => {
            let rev: i64 = rev.parse().ok()?;
            if rev < 1 {
                return None;
            }
            (family, Some(rev))
        }
        None => (body, None),
    };
    if family.is_empty() {
        return None;
    }
    Some(TaskDefinitionRef {
        family: family.to_owned(),
        revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_arns() {
        let arns = ArnBuilder::new("eu-west-1");
        assert_eq!(
            arns.cluster("demo"),
            "arn:aws:ecs:eu-west-1:000000000000:cluster/demo"
        );
        assert_eq!(
            arns.task_definition("web", 3),
            "arn:aws:ecs:eu-west-1:000000000000:task-definition/web:3"
        );
        assert_eq!(
            arns.container("demo", "abc", "u-1"),
            "arn:aws:ecs:eu-west-1:000000000000:container/demo/abc/u-1"
        );
    }

    #[test]
    fn reads_cluster_names() {
        assert_eq!(cluster_name(None), "default");
        assert_eq!(cluster_name(Some("")), "default");
        assert_eq!(cluster_name(Some("demo")), "demo");
        assert_eq!(
            cluster_name(Some("arn:aws:ecs:us-east-1:123456789012:cluster/demo")),
            "demo"
        );
    }

    #[test]
    fn reads_ids_and_clusters() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:task/default/5b1f";
        assert_eq!(resource_id(arn), "5b1f");
        assert_eq!(resource_id("5b1f"), "5b1f");
        assert_eq!(resource_id("arn:aws:ecs:us-east-1:1:task/5b1f"), "5b1f");
        assert_eq!(cluster_of(arn), Some("default"));
        assert_eq!(cluster_of("arn:aws:ecs:us-east-1:1:task/5b1f"), None);
    }

    #[test]
    fn reads_task_definition_refs() {
        assert_eq!(
            task_definition_ref("web"),
            Some(TaskDefinitionRef {
                family: "web".into(),
                revision: None
            })
        );
        assert_eq!(
            task_definition_ref("web:4"),
            Some(TaskDefinitionRef {
                family: "web".into(),
                revision: Some(4)
            })
        );
        assert_eq!(
            task_definition_ref("arn:aws:ecs:us-east-1:000000000000:task-definition/web:2"),
            Some(TaskDefinitionRef {
                family: "web".into(),
                revision: Some(2)
            })
        );
        assert_eq!(task_definition_ref("web:x"), None);
        assert_eq!(task_definition_ref("web:0"), None);
        assert_eq!(task_definition_ref(""), None);
        assert_eq!(task_definition_ref("arn:aws:ecs:r:a:cluster/x"), None);
    }

    #[test]
    fn ids_are_32_hex() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
