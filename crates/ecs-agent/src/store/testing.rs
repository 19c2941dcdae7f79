//! A storage backend whose writes can be made to fail, so tests can show
//! what the agent does when the disk refuses a commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::backends::InMemoryBackend;
use redb::StorageBackend;

use super::{Store, StoreError};

/// Turns write failures on and off; clones share the switch.
#[derive(Debug, Clone, Default)]
pub struct DiskSwitch(Arc<AtomicBool>);

impl DiskSwitch {
    pub fn fail_writes(&self, fail: bool) {
        self.0.store(fail, Ordering::SeqCst);
    }

    fn failing(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Memory that survives the store reopening it, with a switch.
#[derive(Debug, Clone)]
struct FlakyDisk {
    memory: Arc<InMemoryBackend>,
    switch: DiskSwitch,
}

impl FlakyDisk {
    fn check(&self) -> std::io::Result<()> {
        if self.switch.failing() {
            Err(std::io::Error::other("injected write failure"))
        } else {
            Ok(())
        }
    }
}

impl StorageBackend for FlakyDisk {
    fn len(&self) -> std::io::Result<u64> {
        self.memory.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.memory.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.memory.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.memory.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.memory.write(offset, data)
    }
}

impl Store {
    /// An in-memory store whose commits fail while the switch says so.
    pub(crate) fn flaky() -> Result<(Store, DiskSwitch), StoreError> {
        let switch = DiskSwitch::default();
        let store = Store::with_backend(
            FlakyDisk {
                memory: Arc::new(InMemoryBackend::new()),
                switch: switch.clone(),
            },
            "flaky in-memory checkpoint",
        )?;
        Ok((store, switch))
    }
}
