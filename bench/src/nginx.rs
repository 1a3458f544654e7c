//! The reference: Debian's nginx, started with a configuration of our own
//! in a temp dir — three WebDAV volumes (PUT/DELETE, sendfile for GET) and
//! one server that answers every request with `return 302`.

use anyhow::{bail, Context};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:port` of each WebDAV volume.
    pub dav: Vec<String>,
    /// `http://127.0.0.1:port` of the `return 302` server.
    pub redirect: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Nginx {
    pub fn start() -> anyhow::Result<Nginx> {
        let binary = [
            "/usr/sbin/nginx",
            "/usr/local/sbin/nginx",
            "/usr/local/nginx/sbin/nginx",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .context("nginx is not installed (Debian: apt-get install nginx; scripts/deps.sh does)")?;
        let dir = tempfile::tempdir()?;
        let ports: Vec<u16> = (0..4).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
        let mut servers = String::new();
        for (i, port) in ports[..3].iter().enumerate() {
            let root = dir.path().join(format!("v{i}"));
            std::fs::create_dir_all(&root)?;
            servers.push_str(&format!(
                "server {{ listen 127.0.0.1:{port}; root {}; dav_methods PUT DELETE; create_full_put_path on; }}\n",
                root.display()
            ));
        }
        servers.push_str(&format!(
            "server {{ listen 127.0.0.1:{}; location / {{ return 302 http://127.0.0.1:{}$uri; }} }}\n",
            ports[3], ports[0]
        ));
        // Workers of a root nginx run as nobody, who could not write here.
        let user = if nix_is_root() { "user root;" } else { "" };
        let conf = format!(
            "{user}\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;\n\
             client_max_body_size 0; client_body_temp_path {d}/body;\n{servers}}}\n",
            d = dir.path().display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(binary)
            .args([
                "-p",
                dir.path().to_str().unwrap(),
                "-c",
                conf_path.to_str().unwrap(),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nginx")?;
        let nginx = Nginx {
            child,
            dav: ports[..3]
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            redirect: format!("http://127.0.0.1:{}", ports[3]),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while ports
            .iter()
            .any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            if Instant::now() > deadline {
                bail!("nginx did not start listening within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

impl Nginx {
    /// CPU seconds (user + system) spent so far by nginx: its master and
    /// its workers (the master's children), from `/proc`.
    pub fn cpu_seconds(&self) -> f64 {
        let master = self.child.id();
        let mut total = 0.0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // After the command name (in parentheses): state, ppid, … utime
            // is the 12th field and stime the 13th, in ticks of 1/100 s.
            let Some(close) = stat.rfind(')') else { continue };
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            let ppid = fields.get(1).and_then(|p| p.parse::<u32>().ok());
            if pid == master || ppid == Some(master) {
                let ticks: u64 = [11, 12]
                    .iter()
                    .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
                    .sum();
                total += ticks as f64 / 100.0;
            }
        }
        total
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
