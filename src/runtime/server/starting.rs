//! Why an executor could not start, said once and with the fix. glommio sets up
//! io_uring on the executor's own thread and panics there when it cannot; that panic's
//! message and backtrace would come before, and bury, the one line that names the
//! cause. So until its executor runs, a shard thread's panic is kept, not printed, and
//! the process reports it as [`no_io_uring`] says.

use std::cell::Cell;
use std::sync::Mutex;

use crate::base::exit::{Exit, Fatal};

thread_local! {
    /// Whether this thread's executor has started running its shard.
    static UP: Cell<bool> = const { Cell::new(false) };
}

/// The message of the last panic kept by the hook.
static KEPT: Mutex<Option<String>> = Mutex::new(None);

/// Installs the panic hook that keeps the panics of shard threads whose executor has
/// not started; every other panic is printed as before.
pub fn quiet_executor_panics() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let shard = thread.name().is_some_and(|n| n.starts_with("shard-"));
        if !shard || UP.with(Cell::get) {
            return print(info);
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        if let Ok(mut kept) = KEPT.lock() {
            *kept = Some(message);
        }
    }));
}

/// Called first thing on a shard's executor: its panics are printed from now on.
pub fn executor_up() {
    UP.with(|up| up.set(true));
}

/// The failure of shard `id`'s executor on `cpu`, which ended before running it
/// (`ended`: what its thread returned), as one line naming the cause and its fix.
/// glommio's own message blames an old kernel whatever the cause, so the cause is
/// found from the system: the kernel's version, the io_uring sysctl, a seccomp filter.
pub fn no_io_uring(id: usize, cpu: usize, ended: &str) -> Fatal {
    let kept = KEPT.lock().ok().and_then(|mut k| k.take());
    let said = kept.as_deref().unwrap_or(ended);
    let what = format!("cannot start shard {id} on CPU {cpu}: io_uring cannot be set up");
    match cause() {
        Some(cause) => Fatal::new(Exit::Unsupported, format!("{what}: {cause}")),
        None => Fatal::new(
            Exit::Other,
            format!(
                "{what} ({said}): it needs Linux 5.8+, no seccomp filter blocking it, and \
                 locked memory (ulimit -l)"
            ),
        ),
    }
}

/// What keeps io_uring from this process, and the fix, if the system shows it.
fn cause() -> Option<String> {
    let release = nix::sys::utsname::uname().ok()?;
    let release = release.release().to_string_lossy().into_owned();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = numbers.next()?.parse().ok()?;
    let minor: u32 = numbers.next()?.parse().ok()?;
    if (major, minor) < (5, 8) {
        return Some(format!(
            "Linux {release} is too old; io_uring as used here needs 5.8 or newer"
        ));
    }
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap_or_default();
    if !matches!(sysctl.trim(), "" | "0") {
        return Some(format!(
            "the kernel has it disabled (sysctl kernel.io_uring_disabled = {}); set it to 0",
            sysctl.trim()
        ));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let filtered = status
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"]);
    filtered.then(|| {
        "a seccomp filter blocks the io_uring system calls (Docker's default profile does): \
         run the container with --security-opt seccomp=deploy/seccomp-io_uring.json, or allow \
         io_uring_setup, io_uring_enter and io_uring_register in the filter"
            .to_string()
    })
}
