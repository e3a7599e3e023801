//! A strobing clock: a node's wall clock flipped between a skew and the true time until
//! stopped. libfaketime re-reads its offset file at most once a second, so the clock jumps
//! about once a second, forwards and back.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cluster::write_clock_offset;

/// How long the clock stays at each setting.
const PERIOD: Duration = Duration::from_millis(1100);

/// The thread flipping one node's clock file; stopped (and the clock set true) by `stop`.
#[derive(Debug)]
pub struct Strobe {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Strobe {
    /// Starts flipping the clock read from `file` between `offset` seconds and none.
    pub fn start(file: PathBuf, offset: i64) -> Strobe {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut skewed = false;
                while !stop.load(Ordering::Relaxed) {
                    skewed = !skewed;
                    let now = if skewed { offset } else { 0 };
                    if let Err(error) = write_clock_offset(&file, now) {
                        eprintln!("clock strobe: {error}");
                    }
                    std::thread::sleep(PERIOD);
                }
                let _ = write_clock_offset(&file, 0);
            }
        });
        Strobe {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops flipping and leaves the clock true.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Strobe {
    fn drop(&mut self) {
        self.stop();
    }
}
