//! Turns a service into a [`Launch`]: a program, its arguments and environment, and every
//! limit applied between the clone and `exec` (its own process group, `RLIMIT_CORE`,
//! `oom_score_adj`, CPU affinity and the cgroup), so the program never runs a single
//! instruction outside them.

use crate::cgroup::ServiceCgroup;
use crate::launch::{BeforeExec, Launch};
use crate::procfs::MARKER_VAR;
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use steward_config::{escaped_os, Service};

/// Checks that the service's program and working directory exist, before anything starts.
pub fn preflight(svc: &Service) -> Result<(), String> {
    check_cwd(&svc.cwd)?;
    resolve_program(OsStr::new(&svc.argv[0]), &svc.cwd, &path_var(svc)).map(drop)
}

fn check_cwd(cwd: &Path) -> Result<(), String> {
    match std::fs::metadata(cwd) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "working directory {} is not a directory; point cwd at a folder",
            cwd.display()
        )),
        Err(e) => Err(format!(
            "working directory {} cannot be used: {e}",
            cwd.display()
        )),
    }
}

fn path_var(svc: &Service) -> String {
    svc.env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
}

/// What runs, prepared for [`Launch`]: the program found, the strings made C strings, and
/// the limits to apply before `exec`.
pub(crate) struct Prepared {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    setup: ChildSetup,
    /// A cgroup v2 group to create the process in.
    into_cgroup: Option<CString>,
}

impl Prepared {
    /// The launch of this, writing its output to `output`.
    pub fn launch(&self, output: OwnedFd) -> Launch<'_> {
        Launch {
            program: self.program.clone(),
            argv: self.argv.clone(),
            envp: self.envp.clone(),
            cwd: self.cwd.clone(),
            output,
            before_exec: &self.setup,
            into_cgroup: self.into_cgroup.clone(),
        }
    }
}

/// Prepares `argv` to run with `svc`'s limits, in the agent's environment with `env` and
/// the unit's marker added. Errors are written for the person reading `ps`.
pub(crate) fn prepare(
    svc: &Service,
    argv: &[OsString],
    cpus: Option<&[usize]>,
    env: &BTreeMap<String, String>,
    unit: &str,
    cgroup: Option<&ServiceCgroup>,
) -> Result<Prepared, String> {
    check_cwd(&svc.cwd)?;
    let program = resolve_program(&argv[0], &svc.cwd, &path_var(svc))?;
    let nul = |what: &str| format!("{what} holds a NUL byte, which no program can be given");
    let c = |s: &OsStr, what: &str| CString::new(s.as_bytes()).map_err(|_| nul(what));
    let mut vars: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    vars.extend(env.iter().map(|(k, v)| (k.into(), v.into())));
    vars.insert(MARKER_VAR.into(), unit.into());
    let envp = vars
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv)
                .map_err(|_| nul(&format!("the environment variable {}", k.to_string_lossy())))
        })
        .collect::<Result<_, _>>()?;
    Ok(Prepared {
        program: c(program.as_os_str(), "the program's path")?,
        argv: argv
            .iter()
            .map(|a| c(a, "an argument"))
            .collect::<Result<_, _>>()?,
        envp,
        cwd: c(svc.cwd.as_os_str(), "the working directory")?,
        setup: ChildSetup::new(svc, cpus, cgroup)?,
        into_cgroup: cgroup
            .and_then(ServiceCgroup::unified_dir)
            .map(|d| c(d.as_os_str(), "the cgroup's path"))
            .transpose()?,
    })
}

/// Finds the program the way `execvp` would, so a typo is reported by name and not as a
/// bare ENOENT.
fn resolve_program(name: &OsStr, cwd: &Path, path_var: &str) -> Result<PathBuf, String> {
    let check = |p: &Path| -> Result<(), String> {
        let shown = escaped_os(p.as_os_str());
        let meta = std::fs::metadata(p).map_err(|_| format!("program {shown} not found"))?;
        if meta.is_dir() {
            return Err(format!("{shown} is a directory, not a program"));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!(
                "{shown} is not executable (mode {:o}); chmod +x it or run it through its interpreter",
                meta.permissions().mode() & 0o777
            ));
        }
        Ok(())
    };
    if name.as_bytes().contains(&b'/') {
        let p = cwd.join(name);
        check(&p)?;
        return Ok(p);
    }
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            check(&p)?;
            return Ok(p);
        }
    }
    Err(format!(
        "program \"{}\" not found in PATH ({path_var})",
        escaped_os(name)
    ))
}

/// Everything the child does before `exec`, prepared in the parent.
struct ChildSetup {
    core_dumps: bool,
    oom_score_adj: Vec<u8>,
    cpus: Option<nix::sched::CpuSet>,
    cgroup_procs: Vec<CString>,
}

impl ChildSetup {
    fn new(
        svc: &Service,
        cpus: Option<&[usize]>,
        cgroup: Option<&ServiceCgroup>,
    ) -> Result<Self, String> {
        let cpus = match cpus {
            None => None,
            Some(list) => {
                let mut set = nix::sched::CpuSet::new();
                for &cpu in list {
                    set.set(cpu)
                        .map_err(|_| format!("CPU {cpu} is beyond what this system supports"))?;
                }
                Some(set)
            }
        };
        let cgroup_procs = cgroup
            .map(|g| g.procs_files())
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                CString::new(p.as_os_str().as_bytes())
                    .map_err(|_| "cgroup path holds a NUL byte".to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(ChildSetup {
            core_dumps: svc.core_dumps,
            oom_score_adj: svc.oom_score_adj.to_string().into_bytes(),
            cpus,
            cgroup_procs,
        })
    }
}

impl BeforeExec for ChildSetup {
    /// Runs in the child between the clone and exec; stderr is already the service's log.
    fn apply(&self, in_group: bool) -> std::io::Result<()> {
        if !in_group {
            for procs in &self.cgroup_procs {
                write_path(procs, b"0")
                    .map_err(|e| report("steward: cannot join the service's cgroup", e))?;
            }
        }
        let core = if self.core_dumps {
            // Raise the soft limit to the hard one.
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: valid pointer to a local.
            unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut cur) };
            libc::rlimit {
                rlim_cur: cur.rlim_max,
                rlim_max: cur.rlim_max,
            }
        } else {
            libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            }
        };
        // SAFETY: valid pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &core) } != 0 {
            return Err(report(
                "steward: cannot set RLIMIT_CORE",
                std::io::Error::last_os_error(),
            ));
        }
        write_path(c"/proc/self/oom_score_adj", &self.oom_score_adj).map_err(|e| {
            report(
                "steward: cannot set oom_score_adj (lowering it needs CAP_SYS_RESOURCE)",
                e,
            )
        })?;
        if let Some(set) = &self.cpus {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set).map_err(|e| {
                report(
                    "steward: cannot set CPU affinity (are those CPUs online and allowed?)",
                    e.into(),
                )
            })?;
        }
        Ok(())
    }
}

/// open + write + close, without allocating.
fn write_path(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: a valid NUL-terminated path and a valid buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Writes what failed to the child's stderr (the service log) and passes the error on.
fn report(what: &str, err: std::io::Error) -> std::io::Error {
    // SAFETY: writing a static buffer to fd 2.
    unsafe {
        libc::write(2, what.as_ptr().cast(), what.len());
        libc::write(2, b"\n".as_ptr().cast(), 1);
    }
    err
}
