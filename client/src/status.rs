//! The cluster as the master sees it (`/-/status`, the admin jobs), its
//! health (`/-/healthy`, `/-/ready`), and round-trip times (`ping`).

use crate::client::{error_body, Client};
use crate::error::{Error, Result};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// `GET /-/status`, the fields a client shows (unknown ones are ignored,
/// missing ones are defaults, so newer and older masters both decode).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ClusterStatus {
    pub version: String,
    pub replicas: usize,
    pub healthy_volumes: usize,
    pub volumes: Vec<VolumeStatus>,
    pub keys: KeyCounts,
    pub index: IndexStatus,
    /// Keys the expirer has deleted since the master started.
    pub expired: Option<u64>,
}

/// One volume in [`ClusterStatus`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct VolumeStatus {
    pub address: String,
    pub healthy: bool,
    pub writable: bool,
    /// Unix ms of the master's last successful poll.
    pub last_seen: Option<u64>,
    pub last_error: Option<String>,
    /// Why its disk is taken for hung, while it is: it takes no writes,
    /// and readers go to other replicas.
    pub stalled: Option<String>,
    /// A data dir turned read-only.
    pub read_only: bool,
    /// Unix ms when it came back on a new, empty disk (until repaired).
    pub lost_data_at: Option<u64>,
    /// Unix ms when an index a master created empty first saw it holding
    /// blobs (a lost index?): gc leaves the older blobs alone.
    pub foreign_before: Option<u64>,
    pub free_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub blobs: Option<u64>,
    pub zone: Option<String>,
}

impl VolumeStatus {
    /// How it is, in a word or two: `DOWN`, `up`, or up with what keeps
    /// it from taking writes (`up (disk stalled)`, `up (read-only)`,
    /// `up (full)`), or `up (lost data)` when it came back on a new disk. The status
    /// page shows the same words.
    pub fn health(&self) -> &'static str {
        match self {
            VolumeStatus { healthy: false, .. } => "DOWN",
            VolumeStatus { stalled: Some(_), .. } => "up (disk stalled)",
            VolumeStatus {
                lost_data_at: Some(_),
                ..
            } => "up (lost data)",
            VolumeStatus { read_only: true, .. } => "up (read-only)",
            VolumeStatus { writable: false, .. } => "up (full)",
            _ => "up",
        }
    }

    /// What to say about it: why it failed, why its disk is taken for
    /// hung, or what to do about data it lost or holds unknown.
    pub fn note(&self) -> &str {
        if let Some(why) = self.last_error.as_deref().or(self.stalled.as_deref()) {
            return why;
        }
        match self {
            // A data dir gone under the running volume: it reports it
            // without its id, and takes no writes.
            VolumeStatus {
                lost_data_at: Some(_),
                read_only: true,
                ..
            } => "a data dir is gone: restart the volume once its disk is back or replaced, then run `trove-master verify --repair`",
            VolumeStatus {
                lost_data_at: Some(_),
                ..
            } => "on a new disk: run `trove-master verify --repair`",
            VolumeStatus {
                foreign_before: Some(_),
                ..
            } => "holds blobs the index never knew (a lost index?): see `trove-master rebuild`",
            _ => "",
        }
    }
}

/// Keys in the index, by state.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct KeyCounts {
    pub live: i64,
    pub writing: i64,
    pub unlinked: i64,
}

/// The index in [`ClusterStatus`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct IndexStatus {
    pub disk_bytes: u64,
}

/// An admin job's progress (`GET /-/rebalance|verify|gc`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct JobStatus {
    pub job: String,
    /// `running`, `done`, `cancelled` or `failed`.
    pub state: String,
    pub total: u64,
    pub scanned: u64,
    pub changed: u64,
    pub failed: u64,
}

/// Whether the cluster serves.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// The master answering.
    pub master: String,
    /// `/-/healthy` answered `200`.
    pub alive: bool,
    /// `/-/ready`: enough healthy volumes for writes.
    pub ready: bool,
    /// The master's one-line explanation of readiness.
    pub detail: String,
}

/// Round-trip times of `/-/healthy`.
#[derive(Debug, Clone, Serialize)]
pub struct Ping {
    pub target: String,
    /// `None` when it did not answer (see `error`).
    #[serde(serialize_with = "millis")]
    pub rtt: Option<Duration>,
    pub error: Option<String>,
}

fn millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
        None => s.serialize_none(),
    }
}

impl Client {
    /// The cluster's status: volumes, key counts, index.
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// let status = client.status().await?;
    /// println!("{} of {} volumes healthy", status.healthy_volumes, status.volumes.len());
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<ClusterStatus> {
        self.ops_json("/-/status").await
    }

    /// The admin jobs that have run since the master started (running or
    /// finished): rebalance, verify, gc.
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// for job in client.jobs().await? { println!("{} {}", job.job, job.state); }
    /// # Ok(()) }
    /// ```
    pub async fn jobs(&self) -> Result<Vec<JobStatus>> {
        let mut out = vec![];
        for name in ["rebalance", "verify", "gc"] {
            match self.ops_json::<JobStatus>(&format!("/-/{name}")).await {
                Ok(job) => out.push(job),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Whether the master serves and is ready for writes (not retried: it
    /// reports the moment). With several masters, the first that answers,
    /// in fail-over order, is asked.
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// let health = client.health().await?;
    /// assert!(health.ready, "{}", health.detail);
    /// # Ok(()) }
    /// ```
    pub async fn health(&self) -> Result<Health> {
        let mut last = None;
        for _ in self.masters() {
            let i = self.current_master();
            match self.health_of(&self.master_url("")).await {
                Err(e) if e.unreachable() => {
                    self.fail_over(i);
                    last = Some(e);
                }
                answer => return answer,
            }
        }
        Err(last.expect("a client has at least one master"))
    }

    /// [`Client::health`] of the master at `base`.
    async fn health_of(&self, base: &str) -> Result<Health> {
        let url = format!("{base}/-/healthy");
        let resp = self.send_small(Method::GET, &url, |r| r).await?;
        if crate::client::from_a_volume(&resp) {
            return Err(crate::client::not_a_master(&url));
        }
        let alive = resp.status() == StatusCode::OK;
        let url = format!("{base}/-/ready");
        let resp = self.send_small(Method::GET, &url, |r| r).await?;
        let ready = resp.status() == StatusCode::OK;
        let detail = error_body(resp).await.trim().to_string();
        Ok(Health {
            master: base.to_string(),
            alive,
            ready,
            detail,
        })
    }

    /// Round-trip times to every master and to every volume they know.
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// for p in client.ping().await? { println!("{} {:?}", p.target, p.rtt); }
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Vec<Ping>> {
        let status = self.status().await?;
        let mut targets: Vec<String> = self
            .masters()
            .iter()
            .map(|m| m.as_str().trim_end_matches('/').to_string())
            .collect();
        targets.extend(status.volumes.iter().map(|v| format!("http://{}", v.address)));
        let pings = targets.into_iter().map(|target| async move {
            let started = Instant::now();
            let url = format!("{target}/-/healthy");
            match self.send_small(Method::GET, &url, |r| r).await {
                Ok(resp) if resp.status() == StatusCode::OK => Ping {
                    target,
                    rtt: Some(started.elapsed()),
                    error: None,
                },
                Ok(resp) => Ping {
                    target,
                    rtt: None,
                    error: Some(format!("answered {}", resp.status())),
                },
                Err(e) => Ping {
                    target,
                    rtt: None,
                    error: Some(e.to_string()),
                },
            }
        });
        Ok(futures::future::join_all(pings).await)
    }

    async fn ops_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(path, |url, _| async move {
            let resp = self.send_small(Method::GET, &url, |r| r).await?;
            if !resp.status().is_success() || crate::client::from_a_volume(&resp) {
                return Err(crate::client::status_error(path, &url, resp).await);
            }
            match resp.json::<T>().await {
                Ok(v) => Ok(v),
                // A volume's `/-/status` is JSON too, but not the master's.
                Err(_) if !crate::client::answers_as_master(&url).await => {
                    Err(crate::client::not_a_master(&url))
                }
                Err(e) => Err(Error::Protocol {
                    url: url.clone(),
                    message: format!("unexpected JSON: {e}"),
                }),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What keeps a volume that answers from taking writes is named, the
    /// most pressing first, as the status page names it.
    #[test]
    fn a_volume_s_health_names_what_keeps_it_from_writes() {
        let up = VolumeStatus {
            healthy: true,
            writable: true,
            ..Default::default()
        };
        let full = VolumeStatus {
            writable: false,
            ..up.clone()
        };
        let stalled = VolumeStatus {
            stalled: Some("the disk of data dir /d is not answering".into()),
            ..full.clone()
        };
        let read_only = VolumeStatus {
            read_only: true,
            ..full.clone()
        };
        let new_disk = VolumeStatus {
            lost_data_at: Some(1),
            ..up.clone()
        };
        let dir_gone = VolumeStatus {
            lost_data_at: Some(1),
            ..read_only.clone()
        };
        let foreign = VolumeStatus {
            foreign_before: Some(1),
            ..up.clone()
        };
        let down = VolumeStatus {
            healthy: false,
            last_error: Some("refused".into()),
            ..stalled.clone()
        };
        let words: Vec<&str> = [
            &up, &full, &stalled, &read_only, &new_disk, &dir_gone, &foreign, &down,
        ]
        .iter()
        .map(|v| v.health())
        .collect();
        assert_eq!(
            words,
            [
                "up",
                "up (full)",
                "up (disk stalled)",
                "up (read-only)",
                "up (lost data)",
                "up (lost data)",
                "up",
                "DOWN"
            ]
        );
        assert!(
            dir_gone.note().contains("restart the volume"),
            "{}",
            dir_gone.note()
        );
        assert!(new_disk.note().contains("verify --repair"), "{}", new_disk.note());
        assert!(!new_disk.note().contains("restart"), "{}", new_disk.note());
        assert!(foreign.note().contains("rebuild"), "{}", foreign.note());
        assert_eq!(stalled.note(), "the disk of data dir /d is not answering");
        assert_eq!(down.note(), "refused", "why it is down comes first");
        assert_eq!(up.note(), "");
    }
}
