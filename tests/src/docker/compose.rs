//! The repository's `docker-compose.yml`, brought up under a project name
//! unique to the run and taken down (with its volumes) on drop.

use std::collections::HashMap;
use std::sync::Arc;

use super::{client, docker, repo, run, unique_project, wait_healthy, Names};

/// `docker compose` where the plugin exists, else `docker-compose`.
async fn compose_command() -> Vec<String> {
    let (code, _) = run("docker", &["compose", "version"], &[]).await;
    if code == 0 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// A cluster started by Compose from `docker-compose.yml`.
pub struct ComposeCluster {
    pub project: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
    /// Resolves the services' names (`vol1`…), as the redirects use them.
    pub http: reqwest::Client,
}

impl ComposeCluster {
    /// `compose up -d` with the image of this workspace's version and the
    /// master published on a port Docker picks; waits for Docker to report
    /// the master healthy (its health check is the image's own probe).
    pub async fn up() -> ComposeCluster {
        let project = unique_project();
        let env = vec![
            ("TROVE_TAG".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ("TROVE_MASTER_PORT".to_string(), "0".to_string()),
        ];
        let names = Arc::new(Names::default());
        let cluster = ComposeCluster {
            project,
            command: compose_command().await,
            env,
            http: client(Arc::clone(&names)),
        };
        let (code, _) = cluster.compose(&["up", "-d"]).await;
        assert_eq!(code, 0, "compose up failed");
        wait_healthy(&cluster.container("master").await).await;
        // Service name → address on the project's network.
        let mut map = HashMap::new();
        for service in ["vol1", "vol2", "vol3", "master"] {
            let id = cluster.container(service).await;
            let ip = docker(&[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                &id,
            ])
            .await;
            map.insert(service.to_string(), ip.trim().parse().expect("an IP address"));
        }
        names.update(map);
        cluster
    }

    /// Runs `compose -p <project> -f docker-compose.yml args`.
    pub async fn compose(&self, args: &[&str]) -> (i32, String) {
        let file = repo().join("docker-compose.yml");
        let mut all: Vec<&str> = self.command[1..].iter().map(String::as_str).collect();
        all.extend(["-p", &self.project, "-f", file.to_str().expect("a UTF-8 path")]);
        all.extend(args);
        run(&self.command[0], &all, &self.env).await
    }

    /// The container of `service`.
    pub async fn container(&self, service: &str) -> String {
        let (code, out) = self.compose(&["ps", "-q", service]).await;
        assert_eq!(code, 0);
        out.trim().to_string()
    }

    /// Where the master is published on the host (`127.0.0.1:port`).
    pub async fn published_master(&self) -> String {
        let out = docker(&["port", &self.container("master").await, "3000/tcp"]).await;
        out.lines().next().expect("a published port").trim().to_string()
    }
}

impl Drop for ComposeCluster {
    fn drop(&mut self) {
        let file = repo().join("docker-compose.yml");
        let ok = std::process::Command::new(&self.command[0])
            .args(&self.command[1..])
            .args(["-p", &self.project, "-f"])
            .arg(file)
            .args(["down", "-v", "--remove-orphans", "-t", "10"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "compose down for {} FAILED: remove its containers and volumes by hand",
                self.project
            );
        }
    }
}
