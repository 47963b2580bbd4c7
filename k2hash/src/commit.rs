//! Group commit for `sync` mode: a writer that needs its bytes on stable storage waits for a
//! flush that *started* after its write; one fdatasync serves every writer waiting at that
//! moment, so throughput scales with the number of concurrent writers.

use crate::error::Result;
use crate::region::Region;
use parking_lot::{Condvar, Mutex};

#[derive(Default)]
struct State {
    started: u64,
    completed: u64,
    running: bool,
    failed: Option<String>,
}

#[derive(Default)]
pub(crate) struct GroupCommit {
    st: Mutex<State>,
    cv: Condvar,
}

impl GroupCommit {
    /// Flushes completed so far.
    pub(crate) fn flushes(&self) -> u64 {
        self.st.lock().completed
    }

    /// Returns once a flush that began after this call has completed.
    pub(crate) fn flush(&self, region: &Region) -> Result<()> {
        let mut st = self.st.lock();
        let target = st.started + 1;
        loop {
            if st.completed >= target {
                return Ok(());
            }
            if !st.running {
                st.running = true;
                st.started += 1;
                let mine = st.started;
                drop(st);
                let r = region.sync_data();
                st = self.st.lock();
                st.running = false;
                st.completed = mine;
                st.failed = r.as_ref().err().map(|e| e.to_string());
                self.cv.notify_all();
                if mine >= target {
                    return r;
                }
            } else {
                self.cv.wait(&mut st);
                if st.completed >= target {
                    if let Some(f) = &st.failed {
                        return Err(crate::Error::io(
                            "fdatasync",
                            region.path.as_deref(),
                            std::io::Error::other(f.clone()),
                        ));
                    }
                }
            }
        }
    }
}
