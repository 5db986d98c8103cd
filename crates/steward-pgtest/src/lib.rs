//! A throwaway PostgreSQL cluster for tests: Debian's `initdb` and `pg_ctl` on a free port
//! of 127.0.0.1, its data and socket in a temp dir, password authentication over TCP. As
//! root it runs as the `postgres` user (PostgreSQL refuses root). A watchdog process stops
//! it and removes its files when the test process ends, however it ends; dropping it
//! does the same at once.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub const USER: &str = "steward";

pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    password: String,
    /// Who runs the server: `Some("postgres")` when the tests run as root.
    run_as: Option<String>,
}

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// Where Debian puts the server's programs: the newest `/usr/lib/postgresql/*/bin`.
fn bindir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!("PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install -y postgresql (scripts/test does)")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Cluster {
    /// A new cluster, started and ready. `durable = false` turns fsync off (tests);
    /// benchmarks keep it on.
    pub fn start(durable: bool) -> Cluster {
        let bin = bindir();
        let run_as = is_root().then(|| "postgres".to_string());
        let data = std::env::temp_dir().join(format!(
            "steward-pgtest-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&data).expect("a temp dir for the cluster");
        let password = format!("pw{:016x}", fastrand::u64(..));
        let pwfile = data.join("pwfile");
        std::fs::write(&pwfile, &password).expect("write the password file");
        if let Some(user) = &run_as {
            let ok = Command::new("chown")
                .args(["-R", user])
                .arg(&data)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot give {} to the {user} user", data.display());
        }
        let cluster = Cluster {
            bin,
            data,
            port: 0,
            password,
            run_as,
        };
        let pgdata = cluster.pgdata();
        cluster.run(
            "initdb",
            &[
                "-D",
                &pgdata.display().to_string(),
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 300\nshared_buffers = 64MB\n",
            cluster.data.display()
        );
        if !durable {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let mut existing =
            std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap_or_default();
        existing.push_str(&conf);
        std::fs::write(pgdata.join("postgresql.conf"), existing).expect("write postgresql.conf");
        let mut cluster = cluster;
        // The port may be taken between choosing and binding it: try a few.
        for _ in 0..5 {
            cluster.port = free_port();
            if cluster.try_start() {
                cluster.watch_parent();
                return cluster;
            }
        }
        panic!(
            "PostgreSQL did not start; see {}",
            cluster.data.join("server.log").display()
        );
    }

    fn pgdata(&self) -> PathBuf {
        self.data.join("pgdata")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let log = self.data.join("server.log");
        self.command("pg_ctl")
            .arg("-D")
            .arg(self.pgdata())
            .arg("-l")
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn try_start(&self) -> bool {
        self.pg_ctl(&[
            "-w",
            "-t",
            "60",
            "-o",
            &format!("-p {}", self.port),
            "start",
        ])
    }

    /// Stops the server when this test process ends, even by SIGKILL.
    fn watch_parent(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {ctl} -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            ctl = self.bin.join("pg_ctl").display(),
            data = self.pgdata().display(),
            dir = self.data.display(),
        );
        let mut c = match &self.run_as {
            // The watchdog runs as root (to remove the dir) but stops the server as its user.
            Some(user) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(script.replacen(
                    &format!("{} -D", self.bin.join("pg_ctl").display()),
                    &format!(
                        "runuser -u {user} -- {} -D",
                        self.bin.join("pg_ctl").display()
                    ),
                    1,
                ));
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(script);
                c
            }
        };
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let _ = c.spawn();
    }

    /// A URL for `db` with the superuser's password in it.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://{USER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The same, with no password (for tests of where credentials come from).
    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// A new, empty database; its name.
    pub fn create_db(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// Runs SQL through psql over the local socket (trusted).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                USER,
                "-h",
            ])
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `pg_ctl restart -m fast`: every connection is cut, the server comes back.
    pub fn restart_fast(&self) {
        assert!(
            self.pg_ctl(&[
                "-w",
                "-t",
                "60",
                "-m",
                "fast",
                "-o",
                &format!("-p {}", self.port),
                "restart"
            ]),
            "pg_ctl restart failed; see {}",
            self.data.join("server.log").display()
        );
    }

    /// Stops the server (fast), leaving its files.
    pub fn stop(&self) {
        self.pg_ctl(&["-w", "-m", "fast", "stop"]);
    }

    /// Starts it again on the same port.
    pub fn start_again(&self) {
        assert!(self.try_start(), "PostgreSQL did not start again");
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// One cluster for the whole test process (each test takes a database of its own).
pub fn shared() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(false))
}
