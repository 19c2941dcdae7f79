//! Image inspects asked for while one of the same image is in flight wait
//! for its answer instead of asking Docker again: a burst of 100 tasks of
//! one image decides its pulls with one inspect, not 100 calls queued in
//! dockerd beside the creates and starts (docs/footprint.md §3).
//!
//! Only callers that overlap share an answer; the next caller after it
//! arrived asks Docker again, so a pull or removal since is always seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use crate::docker::{DockerApi, DockerError, ImageInfo};

/// An inspect's answer as its sharers see it.
pub type Inspected = Result<Option<ImageInfo>, Arc<DockerError>>;

#[derive(Debug, Default)]
pub struct SharedInspects {
    in_flight: Mutex<HashMap<String, Arc<OnceCell<Inspected>>>>,
}

impl SharedInspects {
    /// `image` as Docker has it (`None`: not present), from an inspect in
    /// flight when there is one. Cancel-safe: if the caller whose inspect
    /// the others wait on goes away, one of them asks Docker instead.
    pub async fn inspect(&self, docker: &dyn DockerApi, image: &str) -> Inspected {
        let call = Arc::clone(self.lock().entry(image.to_string()).or_default());
        let answer = call
            .get_or_init(|| async { docker.inspect_image(image).await.map_err(Arc::new) })
            .await
            .clone();
        let mut in_flight = self.lock();
        if in_flight
            .get(image)
            .is_some_and(|current| Arc::ptr_eq(current, &call))
        {
            in_flight.remove(image);
        }
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnceCell<Inspected>>>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::docker::fake::{FakeDocker, Op};
    use std::time::Duration;

    const IMAGE: &str = "busybox:latest";

    #[tokio::test(start_paused = true)]
    async fn overlapping_inspects_of_one_image_make_one_call() {
        let docker = FakeDocker::new();
        docker.add_image(IMAGE);
        docker.add_image("other:1");
        docker.set_call_time(Op::InspectImage, Duration::from_millis(100));
        let shared = SharedInspects::default();
        let answers = futures_util::future::join_all(
            (0..50)
                .map(|_| shared.inspect(&*docker, IMAGE))
                .chain([shared.inspect(&*docker, "other:1")]),
        )
        .await;
        assert!(answers.iter().all(|a| matches!(a, Ok(Some(_)))));
        assert_eq!(docker.count(Op::InspectImage), 2, "one per image");
        // Nothing overlaps the next one: Docker is asked again.
        shared.inspect(&*docker, IMAGE).await.unwrap();
        assert_eq!(docker.count(Op::InspectImage), 3);
        assert!(shared.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_image_and_a_removal_since_are_seen() {
        let docker = FakeDocker::new();
        let shared = SharedInspects::default();
        assert!(shared.inspect(&*docker, IMAGE).await.unwrap().is_none());
        docker.add_image(IMAGE);
        assert!(shared.inspect(&*docker, IMAGE).await.unwrap().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_takes_over_when_the_first_caller_goes() {
        let docker = FakeDocker::new();
        docker.add_image(IMAGE);
        docker.set_call_time(Op::InspectImage, Duration::from_millis(100));
        let shared = Arc::new(SharedInspects::default());
        let first = {
            let (shared, docker) = (shared.clone(), docker.clone());
            tokio::spawn(async move { shared.inspect(&*docker, IMAGE).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = {
            let (shared, docker) = (shared.clone(), docker.clone());
            tokio::spawn(async move { shared.inspect(&*docker, IMAGE).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.abort();
        assert!(second.await.unwrap().unwrap().is_some());
        assert!(shared.lock().is_empty());
    }
}
