//! Child processes that never outlive the build that started them (issue 15, item 1).
//!
//! A killed `pyfunc-env create` used to leave `uv pip install` running, re-parented to init,
//! still installing into an environment that a second `create` had meanwhile rebuilt and
//! marked complete. Every child started through [`harden`] therefore:
//!
//! - runs in a **process group of its own**, so its whole tree (uv and the build backends it
//!   starts) can be stopped at once, and a terminal's Ctrl-C reaches only us;
//! - is **killed with its group when we get SIGINT or SIGTERM**: a handler, installed with the
//!   first hardened child, kills every running child's group and then lets the signal end us;
//! - **dies with us on SIGKILL** (`PR_SET_PDEATHSIG` on Linux), which no handler can catch;
//! - **inherits the locks of the build** ([`inherit_in_children`]): a lock fd stays open in
//!   every descendant, so the environment's lock is held until the last process of the tree
//!   has exited, and a rebuild cannot start while a grandchild (a build backend that outlived
//!   uv) still runs;
//! - carries [`BUILDER_VAR`] (our pid) in its environment, so a later process waiting for a
//!   lock can recognise the descendants of a builder that no longer exists and stop them
//!   ([`kill_orphans`]).

use std::cell::RefCell;
use std::path::Path;
use std::process::Command;

/// Environment variable set on every hardened child: the pid of the `pyfunc-env` that started
/// it. Inherited by the child's own children.
pub const BUILDER_VAR: &str = "PYFUNC_ENV_BUILDER_PID";

thread_local! {
    /// Lock files whose descriptors children started by this thread keep open.
    static INHERITED: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

/// While the returned guard lives, children started by this thread through [`harden`] keep
/// `file` (a lock) open, so the lock is held as long as any of them, or their children, runs.
/// Per thread, so parallel builds (`create --jobs`) each pass on only their own lock.
#[must_use = "the lock is passed on only while the guard lives"]
pub fn inherit_in_children(file: &std::fs::File) -> InheritGuard {
    #[cfg(unix)]
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    #[cfg(not(unix))]
    let fd = {
        let _ = file;
        -1
    };
    INHERITED.with(|list| list.borrow_mut().push(fd));
    InheritGuard { fd }
}

/// See [`inherit_in_children`].
#[derive(Debug)]
pub struct InheritGuard {
    fd: i32,
}

impl Drop for InheritGuard {
    fn drop(&mut self) {
        INHERITED.with(|list| {
            let mut list = list.borrow_mut();
            if let Some(position) = list.iter().rposition(|fd| *fd == self.fd) {
                list.remove(position);
            }
        });
    }
}

/// The locks this thread's children inherit ([`inherit_in_children`]), captured so that work
/// moved to another thread (Tokio's blocking pool) passes them on too: the list is per thread.
#[derive(Debug, Clone, Default)]
pub struct Inherited(Vec<i32>);

/// What children started by this thread inherit now.
#[must_use]
pub fn inherited() -> Inherited {
    INHERITED.with(|list| Inherited(list.borrow().clone()))
}

impl Inherited {
    /// These locks and `file`'s: what the children of a build that holds `file` inherit,
    /// carried by its task rather than by a thread (a task moves between a runtime's threads).
    #[must_use]
    pub fn with(&self, file: &std::fs::File) -> Self {
        #[cfg(unix)]
        let fd = std::os::fd::AsRawFd::as_raw_fd(file);
        #[cfg(not(unix))]
        let fd = {
            let _ = file;
            -1
        };
        let mut fds = self.0.clone();
        fds.push(fd);
        Self(fds)
    }

    /// Passes the captured locks on to the children this thread starts while the guards live.
    /// The caller keeps the lock files open meanwhile (they belong to the capturing thread).
    #[must_use = "the locks are passed on only while the guards live"]
    pub fn enter(&self) -> Vec<InheritGuard> {
        self.0
            .iter()
            .map(|&fd| {
                INHERITED.with(|list| list.borrow_mut().push(fd));
                InheritGuard { fd }
            })
            .collect()
    }
}

/// Prepares `command` to run as a hardened child (see the module documentation). Start it
/// with [`spawn`], [`output`] or [`status`] so SIGINT/SIGTERM can find its group.
pub fn harden(command: &mut Command) {
    command.env(BUILDER_VAR, std::process::id().to_string());
    #[cfg(unix)]
    unix::harden(command, INHERITED.with(|list| list.borrow().clone()));
}

/// A running hardened child; its group is killed if we get SIGINT/SIGTERM while it runs.
#[derive(Debug)]
pub struct Guarded {
    child: std::process::Child,
}

impl std::ops::Deref for Guarded {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.child
    }
}

impl std::ops::DerefMut for Guarded {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.child
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        unregister(self.child.id());
    }
}

/// Hardens and starts `command`.
pub fn spawn(command: &mut Command) -> std::io::Result<Guarded> {
    harden(command);
    let child = command.spawn()?;
    register(child.id());
    Ok(Guarded { child })
}

/// Hardens and runs `command`, collecting its output.
pub fn output(command: &mut Command) -> std::io::Result<std::process::Output> {
    harden(command);
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn()?;
    let id = child.id();
    register(id);
    let result = child.wait_with_output();
    unregister(id);
    result
}

/// Hardens and runs `command`, waiting for its exit status.
pub fn status(command: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    let mut child = spawn(command)?;
    child.wait()
}

#[cfg(unix)]
fn register(pid: u32) {
    unix::register(pid);
}
#[cfg(not(unix))]
fn register(_pid: u32) {}

#[cfg(unix)]
fn unregister(pid: u32) {
    unix::unregister(pid);
}
#[cfg(not(unix))]
fn unregister(_pid: u32) {}

/// A process holding a lock file open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// Its command line, on one line.
    pub command: String,
    /// The `pyfunc-env` that started it ([`BUILDER_VAR`]), if it is a hardened child.
    pub builder: Option<u32>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut command = self.command.clone();
        if command.chars().count() > 100 {
            command = command.chars().take(97).collect::<String>() + "...";
        }
        write!(f, "pid {} (`{command}`)", self.pid)
    }
}

/// `, held by pid 12 (`python -c ...`)` for messages; empty when `holders` is.
#[must_use]
pub fn describe(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return String::new();
    }
    let list: Vec<String> = holders.iter().take(3).map(ToString::to_string).collect();
    let more = holders.len().saturating_sub(3);
    format!(
        ", held by {}{}",
        list.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// The processes that hold `lock` open (Linux: read from `/proc`; elsewhere, or for other
/// users' processes we may not inspect, nothing).
#[must_use]
pub fn holders(lock: &Path) -> Vec<Holder> {
    #[cfg(target_os = "linux")]
    {
        linux::holders(lock)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = lock;
        Vec::new()
    }
}

/// Kills the process groups of `lock`'s holders that a `pyfunc-env` started and that outlived
/// it (their [`BUILDER_VAR`] names a pid that no longer runs): what remains of a build killed
/// with SIGKILL. Returns what was killed.
#[must_use]
pub fn kill_orphans(lock: &Path) -> Vec<Holder> {
    #[cfg(target_os = "linux")]
    {
        linux::kill_orphans(lock)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = lock;
        Vec::new()
    }
}

/// Stops the holders of `lock` that `which` selects (SIGTERM: a `pyfunc-env` then kills its
/// children's groups), waiting up to 10 s for them to exit. Returns those it stopped.
pub fn stop(lock: &Path, which: impl Fn(&Holder) -> bool) -> Vec<Holder> {
    #[cfg(target_os = "linux")]
    {
        let stopped: Vec<Holder> = holders(lock).into_iter().filter(|h| which(h)).collect();
        for holder in &stopped {
            if let Ok(pid) = i32::try_from(holder.pid) {
                // SAFETY: kill(2) on a pid we just found holding the lock.
                #[expect(unsafe_code, reason = "kill(2) has no safe API")]
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let start = std::time::Instant::now();
        while stopped.iter().any(|h| linux::running(h.pid))
            && start.elapsed() < std::time::Duration::from_secs(10)
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        stopped
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (lock, which);
        Vec::new()
    }
}

#[cfg(unix)]
#[expect(
    unsafe_code,
    reason = "signal handlers, prctl and fcntl have no safe API"
)]
mod unix {
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::sync::Once;
    use std::sync::atomic::{AtomicI32, Ordering};

    /// The process groups of running hardened children (0: free slot). A fixed array, so the
    /// signal handler reads it without allocating or locking.
    static GROUPS: [AtomicI32; 256] = [const { AtomicI32::new(0) }; 256];
    static HANDLERS: Once = Once::new();

    pub(super) fn register(pid: u32) {
        let Ok(pid) = i32::try_from(pid) else { return };
        for slot in &GROUPS {
            if slot
                .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return;
            }
        }
        // All slots taken: the child still dies with us on SIGKILL (PR_SET_PDEATHSIG).
    }

    pub(super) fn unregister(pid: u32) {
        let Ok(pid) = i32::try_from(pid) else { return };
        for slot in &GROUPS {
            if slot
                .compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return;
            }
        }
    }

    extern "C" fn on_signal(signal: libc::c_int) {
        for slot in &GROUPS {
            let group = slot.load(Ordering::SeqCst);
            if group > 0 {
                // SAFETY: kill(2) is async-signal-safe; a negative pid names the group.
                unsafe {
                    libc::kill(-group, libc::SIGKILL);
                }
            }
        }
        // SAFETY: signal(2) and raise(3) are async-signal-safe. The signal is blocked while
        // its handler runs; once we return it is delivered again with the default action,
        // so we end as the signal says (exit status 128+n in a shell).
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }

    fn install_handlers() {
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: reading and replacing a signal disposition; `on_signal` only makes
            // async-signal-safe calls and reads atomics.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &raw mut old) != 0 {
                    continue;
                }
                // Leave an ignored signal ignored (`nohup`, background jobs) and a handler
                // someone else installed alone.
                if old.sa_sigaction != libc::SIG_DFL {
                    continue;
                }
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                libc::sigemptyset(&raw mut action.sa_mask);
                action.sa_flags = libc::SA_RESTART;
                libc::sigaction(signal, &raw const action, std::ptr::null_mut());
            }
        }
    }

    pub(super) fn harden(command: &mut Command, inherit: Vec<i32>) {
        HANDLERS.call_once(install_handlers);
        command.process_group(0);
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (prctl, getppid, fcntl) on its own copies.
        unsafe {
            command.pre_exec(move || {
                #[cfg(target_os = "linux")]
                {
                    let signal = libc::c_ulong::try_from(libc::SIGKILL).unwrap_or(9);
                    if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // We may have died between fork and prctl: then nobody would kill it.
                    if u32::try_from(libc::getppid()).ok() != Some(parent) {
                        return Err(std::io::Error::other("the parent process has exited"));
                    }
                }
                #[cfg(not(target_os = "linux"))]
                let _ = parent;
                // The lock descriptors were opened close-on-exec; in this child only, keep
                // them open across exec so the whole tree holds the build's locks.
                for fd in &inherit {
                    let flags = libc::fcntl(*fd, libc::F_GETFD);
                    if flags >= 0 {
                        libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                    }
                }
                Ok(())
            });
        }
    }
}

#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "kill(2) and getpgid(2) have no safe API")]
mod linux {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use super::{BUILDER_VAR, Holder};

    fn alive(pid: u32) -> bool {
        Path::new("/proc").join(pid.to_string()).exists()
    }

    /// Alive and not a zombie.
    pub(super) fn running(pid: u32) -> bool {
        let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    }

    fn describe(pid: &str) -> (String, Option<u32>) {
        let proc = Path::new("/proc").join(pid);
        let cmdline = fs_err::read(proc.join("cmdline")).unwrap_or_default();
        let command: String = cmdline
            .split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).replace('\n', " "))
            .collect::<Vec<_>>()
            .join(" ");
        let environ = fs_err::read(proc.join("environ")).unwrap_or_default();
        let prefix = format!("{BUILDER_VAR}=");
        let builder = environ
            .split(|b| *b == 0)
            .filter_map(|entry| std::str::from_utf8(entry).ok())
            .find_map(|entry| entry.strip_prefix(&prefix))
            .and_then(|pid| pid.parse().ok());
        (command, builder)
    }

    pub(super) fn holders(lock: &Path) -> Vec<Holder> {
        let Ok(target) = fs_err::metadata(lock) else {
            return Vec::new();
        };
        let me = std::process::id();
        let mut found = Vec::new();
        let Ok(processes) = fs_err::read_dir("/proc") else {
            return found;
        };
        for process in processes.flatten() {
            let name = process.file_name().to_string_lossy().into_owned();
            let Ok(pid) = name.parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(fds) = fs_err::read_dir(process.path().join("fd")) else {
                continue;
            };
            let holds = fds.flatten().any(|fd| {
                fs_err::metadata(fd.path())
                    .is_ok_and(|m| m.dev() == target.dev() && m.ino() == target.ino())
            });
            if holds {
                let (command, builder) = describe(&name);
                found.push(Holder {
                    pid,
                    command,
                    builder,
                });
            }
        }
        found
    }

    pub(super) fn kill_orphans(lock: &Path) -> Vec<Holder> {
        let me = std::process::id();
        // SAFETY: getpgid(0) reads our own process group.
        let own_group = unsafe { libc::getpgid(0) };
        let mut killed = Vec::new();
        for holder in holders(lock) {
            let Some(builder) = holder.builder else {
                continue;
            };
            if builder == me || alive(builder) {
                continue;
            }
            let Ok(pid) = i32::try_from(holder.pid) else {
                continue;
            };
            // SAFETY: getpgid and kill on a pid we just found holding our lock; a hardened
            // child leads its own group, which its descendants share.
            unsafe {
                let group = libc::getpgid(pid);
                if group > 1 && group != own_group {
                    libc::kill(-group, libc::SIGKILL);
                }
                libc::kill(pid, libc::SIGKILL);
            }
            tracing::debug!(
                "Stopped {holder}, left running by pyfunc-env pid {builder}, which was killed"
            );
            killed.push(holder);
        }
        killed
    }
}
