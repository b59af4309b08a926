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
//!
//! The same handler lets work that stages files defer the signal ([`defer_signals`]): a pull
//! that is linking an environment into `tmp/` stops at the next file, removes its staging
//! tree, and only then ends as the signal says.

use std::cell::RefCell;
use std::path::Path;
use std::process::Command;

/// Environment variable set on every hardened child: the pid of the `pyfunc-env` that started
/// it. Inherited by the child's own children.
pub const BUILDER_VAR: &str = "PYFUNC_ENV_BUILDER_PID";

thread_local! {
    /// Lock files whose descriptors children started by this thread keep open.
    ///
    /// Ambient rather than a parameter of [`harden`] on purpose, like the redaction registry:
    /// the guarantee is that *every* process started while a build holds its lock keeps the
    /// lock, and children are started from many places (uv, the bytecode compiler, interpreter
    /// probes, `pip` checks), several of which know nothing of the build. With a parameter, one
    /// call site that forgot it would start a child that outlives the lock, the race issue 15
    /// fixed; with this list, forgetting is impossible. It is per thread, never process-wide,
    /// so parallel builds do not share it; env-build's task-local `BUILD_LOCKS` carries it
    /// across `.await` points and into the blocking pool.
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

/// Defers SIGINT, SIGTERM and SIGHUP while it lives, for work that must not be cut short
/// with files half-written (a pull's staging tree in `tmp/`): the signal only makes
/// [`interrupted`] true (hardened children are still killed at once), the work checks it,
/// removes what it wrote and returns; the signal then ends the process, as it would have, when
/// the last guard is dropped. Signals we do not handle (ignored, or someone else's handler)
/// are left alone.
#[must_use = "signals are deferred only while the guard lives"]
#[derive(Debug)]
pub struct SignalsDeferred(());

/// Starts deferring SIGINT, SIGTERM and SIGHUP (see [`SignalsDeferred`]).
pub fn defer_signals() -> SignalsDeferred {
    #[cfg(unix)]
    unix::defer();
    SignalsDeferred(())
}

impl Drop for SignalsDeferred {
    fn drop(&mut self) {
        #[cfg(unix)]
        unix::undefer();
    }
}

/// Whether a signal came while deferred (see [`SignalsDeferred`]): stop, clean up, return.
#[must_use]
pub fn interrupted() -> bool {
    #[cfg(unix)]
    {
        unix::pending() != 0
    }
    #[cfg(not(unix))]
    {
        false
    }
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
    use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

    /// The process groups of running hardened children (0: free slot). A fixed array, so the
    /// signal handler reads it without allocating or locking.
    static GROUPS: [AtomicI32; 256] = [const { AtomicI32::new(0) }; 256];
    static HANDLERS: Once = Once::new();
    /// Live [`super::SignalsDeferred`] guards.
    static DEFERRING: AtomicUsize = AtomicUsize::new(0);
    /// The first signal that came while deferring (0: none).
    static PENDING: AtomicI32 = AtomicI32::new(0);

    pub(super) fn defer() {
        HANDLERS.call_once(install_handlers);
        DEFERRING.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn undefer() {
        if DEFERRING.fetch_sub(1, Ordering::SeqCst) == 1 {
            let signal = PENDING.load(Ordering::SeqCst);
            if signal != 0 {
                end_by(signal);
            }
        }
    }

    pub(super) fn pending() -> i32 {
        PENDING.load(Ordering::SeqCst)
    }

    /// Ends the process as `signal` does by default (exit status 128+n in a shell).
    fn end_by(signal: libc::c_int) {
        // SAFETY: signal(2) and raise(3) are async-signal-safe. In the handler the signal is
        // blocked while it runs; once it returns it is delivered again with the default
        // action. Elsewhere it is delivered at once.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }

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
        if DEFERRING.load(Ordering::SeqCst) > 0 {
            // The deferring work stops at its next check; the last guard ends us.
            let _ = PENDING.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
            if DEFERRING.load(Ordering::SeqCst) > 0 {
                return;
            }
        }
        end_by(signal);
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
        // SAFETY: getpgrp(2) reads our own process group.
        #[cfg(target_os = "linux")]
        let parent_group = unsafe { libc::getpgrp() };
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (prctl, getppid, fcntl, fork, and in the supervisor
        // sigprocmask, sigtimedwait, waitpid, kill, open, read, close, _exit) on its own
        // copies; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // The lock descriptors were opened close-on-exec; in this child only, keep
                // them open across exec so the whole tree holds the build's locks.
                for fd in &inherit {
                    let flags = libc::fcntl(*fd, libc::F_GETFD);
                    if flags >= 0 {
                        libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                    }
                }
                #[cfg(target_os = "linux")]
                {
                    super::supervisor::start(parent, parent_group)
                }
                #[cfg(not(target_os = "linux"))]
                {
                    let _ = parent;
                    Ok(())
                }
            });
        }
    }
}

/// The supervisor between us and every hardened child (Linux), so that the child's whole tree
/// dies with us, SIGKILL included (issue 23). `PR_SET_PDEATHSIG` alone reaches only the child:
/// 3 s after `kill -9` of a `create`, the build backend uv had started was still running.
///
/// ```text
/// pyfunc-env ── supervisor (subreaper, in our process group) ── command (its own group G) ── …
/// ```
///
/// The process `Command` forks becomes the supervisor: it makes itself a child subreaper
/// (`PR_SET_CHILD_SUBREAPER`: orphaned descendants are re-parented to it, not to init), forks
/// the command, which execs, leaves group G to the command's tree (rejoining ours) and waits,
/// running no code but system calls.
/// - The command exits: the supervisor kills what is left of group G and exits as the command
///   did (same code, or the same signal), so callers see the command's status.
/// - We die, however (`PR_SET_PDEATHSIG` tells the supervisor, which survives it): it kills
///   group G, then every descendant that left the group as each is re-parented to it, and
///   exits once it has no children left.
/// - We get SIGINT/SIGTERM: our handler kills group G as before; the supervisor follows.
/// - The supervisor is killed (only SIGKILL can): the command gets SIGKILL
///   (`PR_SET_PDEATHSIG`).
#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "fork, prctl and signal calls have no safe API")]
mod supervisor {
    /// What tells the supervisor that we died. Not one a terminal sends.
    const PARENT_DIED: libc::c_int = libc::SIGUSR2;

    fn error() -> std::io::Error {
        std::io::Error::last_os_error()
    }

    /// A signal as `prctl` takes it (signal numbers are positive).
    fn signal_number(signal: libc::c_int) -> libc::c_ulong {
        libc::c_ulong::try_from(signal).unwrap_or(9)
    }

    /// Runs in the child `Command` forked (a group leader); returns `Ok` only in the process
    /// that is to exec the command.
    pub(super) unsafe fn start(parent: u32, parent_group: libc::pid_t) -> std::io::Result<()> {
        // SAFETY (whole function): called between fork and exec; only system calls.
        unsafe {
            let ours = || u32::try_from(libc::getppid()).ok() == Some(parent);
            let mut signals: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut signals);
            for signal in [
                libc::SIGCHLD,
                PARENT_DIED,
                libc::SIGINT,
                libc::SIGTERM,
                libc::SIGHUP,
                libc::SIGQUIT,
            ] {
                libc::sigaddset(&raw mut signals, signal);
            }
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_BLOCK, &raw const signals, &raw mut before);
            let subreaper = libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) == 0;
            let death = if subreaper {
                PARENT_DIED
            } else {
                libc::SIGKILL
            };
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal_number(death)) != 0 {
                return Err(error());
            }
            // We may have died before prctl: then nobody would tell it.
            if !ours() {
                return Err(std::io::Error::other("the parent process has exited"));
            }
            if !subreaper {
                // An old kernel: the child alone dies with us, as before.
                libc::sigprocmask(libc::SIG_SETMASK, &raw const before, std::ptr::null_mut());
                return Ok(());
            }
            let supervisor = libc::getpid();
            let command = libc::fork();
            if command < 0 {
                return Err(error());
            }
            if command == 0 {
                // The command: dies with the supervisor, which is killed only with SIGKILL.
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal_number(libc::SIGKILL)) != 0 {
                    return Err(error());
                }
                if libc::getppid() != supervisor {
                    return Err(std::io::Error::other("the supervisor has exited"));
                }
                libc::sigprocmask(libc::SIG_SETMASK, &raw const before, std::ptr::null_mut());
                return Ok(());
            }
            supervise(parent, parent_group, supervisor, command, &signals)
        }
    }

    /// The supervisor's life; never returns.
    unsafe fn supervise(
        parent: u32,
        parent_group: libc::pid_t,
        group: libc::pid_t,
        command: libc::pid_t,
        signals: &libc::sigset_t,
    ) -> ! {
        // SAFETY (whole function): system calls on our own process and our descendants.
        unsafe {
            // Group G is the command's tree; we rejoin our parent's group (a terminal's Ctrl-C
            // then reaches us too, and is ignored: our parent decides).
            libc::setpgid(0, parent_group);
            // Hold nothing the command's readers wait on: stdio pipes (EOF when the command's
            // tree is done), std's exec-status pipe, the inherited lock files (the command
            // holds them).
            if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
                for fd in 0..4096 {
                    libc::close(fd);
                }
            }
            let wait = libc::timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            loop {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::sigtimedwait(signals, &raw mut info, &raw const wait);
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    kill_tree(group);
                }
                let mut status = 0;
                loop {
                    let pid = libc::waitpid(-1, &raw mut status, libc::WNOHANG);
                    if pid <= 0 {
                        break;
                    }
                    if pid == command {
                        // Stragglers of the command's group go with it.
                        libc::kill(-group, libc::SIGKILL);
                        exit_like(status);
                    }
                }
            }
        }
    }

    /// Kills group `group`, then each descendant that left it as it is re-parented to us,
    /// until we have no children; then exits.
    unsafe fn kill_tree(group: libc::pid_t) -> ! {
        // SAFETY (whole function): system calls on our own descendants.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
            loop {
                kill_children();
                if libc::waitpid(-1, std::ptr::null_mut(), 0) < 0
                    && *libc::__errno_location() != libc::EINTR
                {
                    libc::_exit(137);
                }
            }
        }
    }

    /// SIGKILL to each of our children (`/proc/thread-self/children`; we have one thread).
    unsafe fn kill_children() {
        // SAFETY (whole function): open/read/close on a buffer of ours, kill on our children.
        unsafe {
            let fd = libc::open(
                c"/proc/thread-self/children".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return;
            }
            let mut buffer = [0u8; 4096];
            let mut pid: libc::pid_t = 0;
            let mut digits = false;
            loop {
                let read = libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len());
                let Ok(read) = usize::try_from(read) else {
                    break;
                };
                if read == 0 {
                    break;
                }
                for &byte in &buffer[..read] {
                    if byte.is_ascii_digit() {
                        pid = pid
                            .saturating_mul(10)
                            .saturating_add(libc::pid_t::from(byte - b'0'));
                        digits = true;
                    } else {
                        if digits && pid > 1 {
                            libc::kill(pid, libc::SIGKILL);
                        }
                        pid = 0;
                        digits = false;
                    }
                }
            }
            if digits && pid > 1 {
                libc::kill(pid, libc::SIGKILL);
            }
            libc::close(fd);
        }
    }

    /// Exits as a process with wait status `status` did: its exit code, or its signal.
    unsafe fn exit_like(status: libc::c_int) -> ! {
        // SAFETY (whole function): ending our own process.
        unsafe {
            if libc::WIFSIGNALED(status) {
                let signal = libc::WTERMSIG(status);
                // No core file of the supervisor for a command that dumped one.
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &raw const none);
                libc::signal(signal, libc::SIG_DFL);
                let mut only: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&raw mut only);
                libc::sigaddset(&raw mut only, signal);
                libc::sigprocmask(libc::SIG_UNBLOCK, &raw const only, std::ptr::null_mut());
                libc::kill(libc::getpid(), signal);
                libc::_exit(128 + signal);
            }
            libc::_exit(libc::WEXITSTATUS(status));
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

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::Command;

    /// Through the supervisor, callers still see the command's own exit code, signal and
    /// output, and nothing of the command's group outlives it.
    #[test]
    fn a_hardened_child_reports_its_own_status_and_output() {
        let status = super::status(Command::new("/bin/sh").args(["-c", "exit 3"])).unwrap();
        assert_eq!(status.code(), Some(3));
        let status = super::status(Command::new("/bin/sh").args(["-c", "kill -TERM $$"])).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        let output =
            super::output(Command::new("/bin/sh").args(["-c", "echo out; echo err >&2"])).unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
        // A background process the command leaves in its group is killed when it exits, and
        // holds no pipe of ours open meanwhile (`output` would wait for it).
        let output = super::output(
            Command::new("/bin/sh").args(["-c", "sleep 60 >/dev/null 2>&1 & echo $!"]),
        )
        .unwrap();
        let pid = String::from_utf8(output.stdout).unwrap();
        let pid = pid.trim();
        let alive = || {
            fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, r)| !r.starts_with('Z'))
            })
        };
        #[cfg(target_os = "linux")]
        {
            let start = std::time::Instant::now();
            while alive() && start.elapsed() < std::time::Duration::from_secs(30) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert!(
                !alive(),
                "the command's background process {pid} outlived it"
            );
        }
        #[cfg(not(target_os = "linux"))]
        let _ = alive;
    }
}
