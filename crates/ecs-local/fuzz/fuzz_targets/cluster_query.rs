//! Fuzzes the cluster query language: any text parses or fails without
//! panicking, and whatever parses evaluates against container instances
//! without panicking. An expression wrapped in `not(...)` must give the
//! opposite answer, which checks that grouping and negation keep the
//! meaning the parser gave the expression alone.
#![no_main]

use ecs_local::query::{self, InstanceFacts};
use ecs_model::ecs_api::Attribute;
use libfuzzer_sys::fuzz_target;

fn attribute(name: &str, value: Option<&str>) -> Attribute {
    Attribute {
        name: name.to_owned(),
        value: value.map(str::to_owned),
        ..Attribute::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(expression) = query::parse(&text) else {
        return;
    };

    // One instance with every fact set, and one with as little as possible.
    let attributes = [
        attribute("ecs.instance-type", Some("t2.micro")),
        attribute("ecs.availability-zone", Some("us-east-1a")),
        attribute("ecs.os-type", Some("linux")),
        attribute("cpus", Some("8")),
        attribute("flag", None),
    ];
    let busy = InstanceFacts {
        ec2_instance_id: Some("i-0123456789abcdef0"),
        agent_connected: true,
        agent_version: Some("1.51.0"),
        registered_at: 1_529_360_908.5,
        running_tasks_count: 3,
        attributes: &attributes,
        task_groups: &["service:web", "service:web", "family:batch"],
    };
    let bare = InstanceFacts {
        ec2_instance_id: None,
        agent_connected: false,
        agent_version: None,
        registered_at: 0.0,
        running_tasks_count: 0,
        attributes: &[],
        task_groups: &[],
    };

    let negated = query::parse(&format!("not({text})")).ok();
    for facts in [&busy, &bare] {
        let answer = expression.matches(facts);
        // The wrapped text may be refused (too long or too deep); when it
        // is not, it must mean the opposite.
        if let Some(negated) = &negated {
            assert_eq!(negated.matches(facts), !answer, "{text:?}");
        }
    }
});
