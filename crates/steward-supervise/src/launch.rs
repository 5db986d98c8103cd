//! Starting a process the way `posix_spawn` does: the child shares the agent's memory
//! (`CLONE_VM | CLONE_VFORK`) until it calls `execve`, so no page table is copied and the
//! agent takes no copy-on-write faults afterwards, however large it is. `fork` would copy
//! the page tables of an agent with a thousand services at every start.
//!
//! Into a cgroup v2 group, the child is instead created inside the group (`clone3` with
//! `CLONE_INTO_CGROUP`, as systemd does), because joining a group by writing
//! `cgroup.procs` waits for an RCU grace period (about 10 ms, the bulk of a restart) when no
//! other move is under way; creating it there costs nothing. That clone copies the page
//! tables (a shared-memory child would need a hand-made stack switch); a kernel without
//! `clone3` gets the first way, and the child writes itself into the group.
//!
//! Between the clone and the `execve` the child runs on a stack of its own, makes system
//! calls only, and allocates nothing; what it needs is prepared here beforehand. The
//! calling thread is suspended until the child has called `execve` (or exited), so the
//! prepared data on its stack outlives the child's use of it. A step that fails is
//! reported through a close-on-exec pipe: an empty pipe means `execve` succeeded.

use std::ffi::{c_int, c_void, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Everything the child does between the clone and `execve`, beyond the file descriptors
/// and working directory: the service's limits.
pub(crate) trait BeforeExec: Sync {
    /// Runs in the child; only async-signal-safe calls, no allocation. `in_group`: the
    /// child was created inside its cgroup and need not join it.
    fn apply(&self, in_group: bool) -> io::Result<()>;
}

/// A process ready to be started.
pub(crate) struct Launch<'a> {
    /// The program's resolved path.
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub cwd: CString,
    /// Its stdout and stderr (the log pipe); stdin is `/dev/null`.
    pub output: OwnedFd,
    pub before_exec: &'a dyn BeforeExec,
    /// The run's cgroup v2 folder, to create the child in.
    pub into_cgroup: Option<CString>,
}

/// The steps a child reports a failure of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    Setup = 1,
    Chdir = 2,
    Exec = 3,
}

/// What the child reads: raw pointers into the parent's prepared data.
struct ChildData<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdin: RawFd,
    output: RawFd,
    report: RawFd,
    before_exec: &'a dyn BeforeExec,
    in_group: bool,
}

/// The kernel's `struct clone_args` (every field 64 bits).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct sigaction` (x86_64 and aarch64): all zero is `SIG_DFL`.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// The child's stack: its own frames and the system calls', nothing more.
const STACK: usize = 64 * 1024;

impl Launch<'_> {
    /// Starts the process; returns its pid once it has called `execve`. The caller must
    /// keep any reaper from reaping it until its exit is waited for (a failed start is
    /// reaped here).
    pub fn start(self) -> io::Result<i32> {
        let stdin = open_dev_null()?;
        let (report_rx, report_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = self
            .envp
            .iter()
            .map(|e| e.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let mut data = ChildData {
            program: self.program.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            cwd: self.cwd.as_ptr(),
            stdin: stdin.as_raw_fd(),
            output: self.output.as_raw_fd(),
            report: report_tx.as_raw_fd(),
            before_exec: self.before_exec,
            in_group: false,
        };
        let group = match &self.into_cgroup {
            // SAFETY: a valid NUL-terminated path.
            Some(dir) => match unsafe {
                libc::open(
                    dir.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            } {
                fd if fd >= 0 => {
                    // SAFETY: a descriptor just opened, owned from here on.
                    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
                }
                _ => None,
            },
            None => None,
        };
        let mut pid = -1;
        if let Some(group) = &group {
            data.in_group = true;
            pid = with_signals_blocked(|| clone_into(group.as_raw_fd(), &data));
            if pid < 0 {
                let e = io::Error::last_os_error().raw_os_error();
                // An older kernel: the shared-memory way, joining the group by writing.
                if !matches!(
                    e,
                    Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG | libc::EOPNOTSUPP)
                ) {
                    return Err(io::Error::last_os_error());
                }
                data.in_group = false;
            }
        }
        if pid < 0 {
            let mut stack = vec![0u8; STACK];
            // The stack grows down: the child starts at its top, 16-byte aligned.
            let top = (stack.as_mut_ptr() as usize + STACK) & !15;
            pid = with_signals_blocked(|| {
                // SAFETY: `child` runs on `stack`, which outlives it: CLONE_VFORK suspends
                // this thread until the child has exec'd or exited. `data` lives on this
                // frame for the same time. The child makes system calls only.
                unsafe {
                    libc::clone(
                        child,
                        top as *mut c_void,
                        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                        &data as *const ChildData as *mut c_void,
                    )
                }
            });
            if pid < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        drop(report_tx);
        let mut report = [0u8; 8];
        let n = nix::unistd::read(&report_rx, &mut report).unwrap_or(0);
        if n < 8 {
            return Ok(pid);
        }
        // It failed and exited: reap it here, its exit means nothing more.
        let mut status = 0;
        // SAFETY: waiting for our own child, with a valid pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
        let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
        let err = io::Error::from_raw_os_error(errno);
        Err(match step {
            s if s == Step::Chdir as u32 => io::Error::new(
                err.kind(),
                format!("cannot enter its working directory: {err}"),
            ),
            s if s == Step::Setup as u32 => {
                io::Error::new(err.kind(), format!("cannot apply its limits: {err}"))
            }
            _ => err,
        })
    }
}

fn open_dev_null() -> io::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")?.into())
}

/// Creates the child inside the group `group` (a descriptor of its folder), with a copy of
/// the agent's memory; it runs [`child`] and never returns. The parent waits until the
/// child has exec'd or exited (CLONE_VFORK). Returns the pid, or -1 with `errno` set.
fn clone_into(group: RawFd, data: &ChildData) -> c_int {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP | libc::CLONE_VFORK as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: group as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM is fork: the child runs on a copy of this stack and
    // of everything `data` points at, and only makes system calls before exec or exit.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        child(data as *const ChildData as *mut c_void);
        // SAFETY: `child` does not return; this is for the compiler's sake.
        unsafe { libc::_exit(127) }
    }
    r as c_int
}

/// Runs `f` with every signal blocked in this thread, so that no handler of the agent's
/// runs in the child (which shares its memory) before the child resets them.
fn with_signals_blocked(f: impl FnOnce() -> c_int) -> c_int {
    // SAFETY: plain signal-set manipulation on locals.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let r = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

/// The child, between the clone and `execve`.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` points at the parent's `ChildData`, alive until we exec or exit.
    let data = unsafe { &*(arg as *const ChildData) };
    // SAFETY: system calls on valid pointers and descriptors, as `posix_spawn` does.
    unsafe {
        // The program starts with every signal at its default, as under systemd: the
        // agent's handlers are not its, and what the agent ignores (SIGPIPE, or what its
        // own starter ignored) is not for it to ignore. The raw call reaches the signals
        // the C library keeps for itself, too.
        for sig in 1..=64usize {
            let dfl = KernelSigaction::default();
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
        // The raw call, as for the dispositions: nothing stays blocked.
        let none: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &none as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );

        // Its own process group, so that a stop signals the whole of it.
        libc::setpgid(0, 0);
        if libc::dup2(data.stdin, 0) < 0
            || libc::dup2(data.output, 1) < 0
            || libc::dup2(data.output, 2) < 0
        {
            fail(data.report, Step::Setup);
        }
        if libc::chdir(data.cwd) != 0 {
            fail(data.report, Step::Chdir);
        }
        if data.before_exec.apply(data.in_group).is_err() {
            fail(data.report, Step::Setup);
        }
        libc::execve(data.program, data.argv, data.envp);
        fail(data.report, Step::Exec)
    }
}

/// Tells the parent which step failed, with `errno`, and exits.
unsafe fn fail(report: RawFd, step: Step) -> ! {
    let errno = *libc::__errno_location();
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    libc::write(report, msg.as_ptr().cast(), msg.len());
    libc::_exit(127)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    struct Nothing;
    impl BeforeExec for Nothing {
        fn apply(&self, _in_group: bool) -> io::Result<()> {
            Ok(())
        }
    }

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    /// Starts `argv` in `cwd` and returns its exit status and its output.
    fn run(program: &str, argv: &[&str], cwd: &str) -> io::Result<(i32, String)> {
        run_in(program, argv, cwd, None)
    }

    fn run_in(
        program: &str,
        argv: &[&str],
        cwd: &str,
        into_cgroup: Option<CString>,
    ) -> io::Result<(i32, String)> {
        let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let launch = Launch {
            program: c(program),
            argv: argv.iter().map(|a| c(a)).collect(),
            envp: vec![c("STEWARD_TEST=yes"), c("PATH=/usr/bin:/bin")],
            cwd: c(cwd),
            output: tx,
            before_exec: &Nothing,
            into_cgroup,
        };
        let pid = launch.start()?;
        let mut out = String::new();
        std::fs::File::from(rx).read_to_string(&mut out)?;
        let mut status = 0;
        // SAFETY: our own child, a valid pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        Ok((libc::WEXITSTATUS(status), out))
    }

    #[test]
    fn the_child_gets_a_clean_start_its_own_group_and_only_the_given_environment() {
        // The masks are read last, by `exec grep` reading its own: a shell waiting for a
        // child blocks every signal meanwhile, so its own status would say so.
        let script = "read x || echo stdin-empty; \
                      test \"$(cut -d' ' -f5 /proc/$$/stat)\" = $$ && echo own-group; pwd; \
                      echo \"env=$STEWARD_TEST\"; exec grep -E '^(SigIgn|SigBlk)' /proc/self/status";
        let (code, out) = run("/bin/sh", &["sh", "-c", script], "/tmp").unwrap();
        assert_eq!(code, 0, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "stdin-empty");
        assert_eq!(lines[1], "own-group");
        assert_eq!(lines[2], "/tmp");
        assert_eq!(lines[3], "env=yes");
        assert_eq!(
            lines[4], "SigBlk:\t0000000000000000",
            "nothing blocked: {out}"
        );
        assert_eq!(
            lines[5], "SigIgn:\t0000000000000000",
            "nothing ignored: {out}"
        );
    }

    #[test]
    fn a_program_that_cannot_be_executed_or_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("not-a-program");
        std::fs::write(&bad, [0u8, 1, 2, 3]).unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = run(bad.to_str().unwrap(), &["x"], "/").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOEXEC), "{err}");
        let err = run("/bin/true", &["true"], "/no/such/dir").unwrap_err();
        assert!(err.to_string().contains("working directory"), "{err}");
    }

    #[test]
    fn into_a_cgroup_v2_group_the_child_is_created_inside_it() {
        // This machine's cgroup v2 hierarchy: the unified one where v1 holds the
        // controllers (a hybrid host), or the only one.
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(std::path::Path::new)
            .find(|p| {
                nix::sys::statfs::statfs(*p)
                    .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            });
        let Some(root) = root else {
            eprintln!("skipped: no cgroup v2 hierarchy here");
            return;
        };
        let group = root.join(format!("steward-launch-test-{}", std::process::id()));
        if std::fs::create_dir(&group).is_err() {
            eprintln!("skipped: cannot make a cgroup v2 group (not root?)");
            return;
        }
        let dir = c(group.to_str().unwrap());
        let got = run_in(
            "/bin/sh",
            &["sh", "-c", "grep '^0::' /proc/self/cgroup"],
            "/",
            Some(dir),
        );
        let _ = std::fs::remove_dir(&group);
        let (code, out) = got.unwrap();
        assert_eq!(code, 0, "{out}");
        let name = group.file_name().unwrap().to_str().unwrap();
        assert!(out.trim_end().ends_with(name), "not in {name}: {out}");
    }
}
