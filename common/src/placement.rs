//! Rendezvous (highest-random-weight) placement.
//!
//! Every volume gets a score for a key, `hash(key ‖ volume)` turned into a
//! weighted random number; the volumes with the highest scores hold the key.
//! Adding a volume only takes over the keys for which it now scores highest,
//! about `1/N` of them, and removing one only moves the keys it held.
//!
//! The scores are stored implicitly (as which volumes hold which key), so
//! this function must never change by accident: the golden-value tests
//! below pin it.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// One volume server as configured: `host:port`, with an optional weight
/// (its share of the keys, relative to the others) and zone (a failure
/// domain: replicas go to distinct zones when there are enough).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSpec {
    /// `host:port`, exactly as stored in records and used in URLs.
    pub addr: String,
    /// Relative capacity share; `1.0` unless given as `host:port=weight`.
    pub weight: f64,
    /// Failure domain, from `host:port@zone`.
    pub zone: Option<String>,
}

/// Errors in the volume list or replica count given on the command line.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlacementError {
    #[error("volume `{0}` is not of the form host:port[=weight][@zone]")]
    BadVolume(String),
    #[error("volume `{spec}` has weight `{weight}`; a weight is a positive number")]
    BadWeight { spec: String, weight: String },
    #[error("volume `{0}` is listed twice")]
    Duplicate(String),
    #[error("no volumes given")]
    NoVolumes,
    #[error("--replicas must be at least 1")]
    ZeroReplicas,
    #[error(
        "--replicas is {replicas} but only {volumes} volume(s) are listed; add volumes or lower --replicas"
    )]
    TooFewVolumes { replicas: usize, volumes: usize },
}

impl FromStr for VolumeSpec {
    type Err = PlacementError;

    /// Parses `host:port[=weight][@zone]`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let spec = spec.trim();
        let (rest, zone) = match spec.split_once('@') {
            Some((rest, zone)) if !zone.is_empty() => (rest, Some(zone.to_string())),
            Some(_) => return Err(PlacementError::BadVolume(spec.to_string())),
            None => (spec, None),
        };
        let (addr, weight) = match rest.split_once('=') {
            Some((addr, w)) => {
                let weight: f64 = w.parse().map_err(|_| PlacementError::BadWeight {
                    spec: spec.to_string(),
                    weight: w.to_string(),
                })?;
                if !(weight.is_finite() && weight > 0.0) {
                    return Err(PlacementError::BadWeight {
                        spec: spec.to_string(),
                        weight: w.to_string(),
                    });
                }
                (addr, weight)
            }
            None => (rest, 1.0),
        };
        let valid = match addr.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p != 0)
            }
            None => false,
        };
        if !valid {
            return Err(PlacementError::BadVolume(spec.to_string()));
        }
        Ok(VolumeSpec {
            addr: addr.to_string(),
            weight,
            zone,
        })
    }
}

impl fmt::Display for VolumeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)?;
        if self.weight != 1.0 {
            write!(f, "={}", self.weight)?;
        }
        if let Some(zone) = &self.zone {
            write!(f, "@{zone}")?;
        }
        Ok(())
    }
}

/// Parses a comma-separated volume list (`--volumes`).
pub fn parse_volume_list(list: &str) -> Result<Vec<VolumeSpec>, PlacementError> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(VolumeSpec::from_str)
        .collect()
}

/// The volume list and replica count: decides where each key lives.
#[derive(Debug, Clone)]
pub struct Placement {
    volumes: Vec<VolumeSpec>,
    replicas: usize,
}

impl Placement {
    /// Checks the list (non-empty, no duplicates) and that `replicas` fits.
    pub fn new(volumes: Vec<VolumeSpec>, replicas: usize) -> Result<Self, PlacementError> {
        if volumes.is_empty() {
            return Err(PlacementError::NoVolumes);
        }
        if replicas == 0 {
            return Err(PlacementError::ZeroReplicas);
        }
        let mut seen = HashSet::new();
        for v in &volumes {
            if !seen.insert(v.addr.as_str()) {
                return Err(PlacementError::Duplicate(v.addr.clone()));
            }
        }
        if replicas > volumes.len() {
            return Err(PlacementError::TooFewVolumes {
                replicas,
                volumes: volumes.len(),
            });
        }
        Ok(Placement { volumes, replicas })
    }

    /// All configured volumes, in the order given.
    pub fn volumes(&self) -> &[VolumeSpec] {
        &self.volumes
    }

    /// How many copies of each key are kept.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Every volume, best first, for `key`.
    pub fn order(&self, key: &[u8]) -> Vec<&VolumeSpec> {
        let mut scored: Vec<(f64, &VolumeSpec)> = self.volumes.iter().map(|v| (score(key, v), v)).collect();
        // Ties are astronomically unlikely; break them by address so the
        // order is total and deterministic anyway.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.addr.cmp(&b.1.addr)));
        scored.into_iter().map(|(_, v)| v).collect()
    }

    /// The replica set for `key` among the volumes `usable` accepts: the
    /// first `replicas` of them in rendezvous order, taking at most one per
    /// zone while zones remain unused. May return fewer than `replicas` when
    /// too few volumes are usable.
    pub fn choose(&self, key: &[u8], usable: impl Fn(&VolumeSpec) -> bool) -> Vec<&VolumeSpec> {
        let candidates: Vec<&VolumeSpec> = self.order(key).into_iter().filter(|v| usable(v)).collect();
        let mut chosen: Vec<&VolumeSpec> = Vec::with_capacity(self.replicas);
        let mut zones: HashSet<&str> = HashSet::new();
        // First pass: one volume per zone (a volume without a zone is a zone
        // of its own).
        for v in &candidates {
            if chosen.len() == self.replicas {
                break;
            }
            let zone = v.zone.as_deref().unwrap_or(v.addr.as_str());
            if zones.insert(zone) {
                chosen.push(v);
            }
        }
        // Second pass: not enough zones, fill up in rendezvous order.
        for v in &candidates {
            if chosen.len() == self.replicas {
                break;
            }
            if !chosen.iter().any(|c| c.addr == v.addr) {
                chosen.push(v);
            }
        }
        chosen
    }

    /// Where `key` belongs when every volume is up.
    pub fn home(&self, key: &[u8]) -> Vec<&VolumeSpec> {
        self.choose(key, |_| true)
    }

    /// Whether `stored` (a record's volumes) is exactly the home of `key`,
    /// ignoring order.
    pub fn is_balanced(&self, key: &[u8], stored: &[String]) -> bool {
        let home = self.home(key);
        home.len() == stored.len() && home.iter().all(|v| stored.contains(&v.addr))
    }
}

/// The weighted rendezvous score of `volume` for `key`: `-weight / ln(u)`
/// with `u` uniform in (0, 1) drawn from `sha256(len(key) ‖ key ‖ addr)`.
/// (The length prefix keeps `key ‖ addr` unambiguous.)
fn score(key: &[u8], volume: &VolumeSpec) -> f64 {
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(volume.addr.as_bytes());
    let digest = h.finalize();
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    // 53 random bits → u in (0, 1), never exactly 0 or 1.
    let u = ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -volume.weight / u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vols(n: usize) -> Vec<VolumeSpec> {
        (0..n)
            .map(|i| format!("10.0.0.{}:3001", i + 1).parse().unwrap())
            .collect()
    }

    fn addrs(v: &[&VolumeSpec]) -> Vec<String> {
        v.iter().map(|v| v.addr.clone()).collect()
    }

    #[test]
    fn parses_volume_specs() {
        let v: VolumeSpec = "host:3001".parse().unwrap();
        assert_eq!((v.addr.as_str(), v.weight, v.zone), ("host:3001", 1.0, None));
        let v: VolumeSpec = "host:3001=2.5@rack1".parse().unwrap();
        assert_eq!(v.addr, "host:3001");
        assert_eq!(v.weight, 2.5);
        assert_eq!(v.zone.as_deref(), Some("rack1"));
        assert_eq!(v.to_string(), "host:3001=2.5@rack1");
        for bad in [
            "host",
            ":3001",
            "host:0",
            "host:x",
            "host:3001=0",
            "host:3001=-1",
            "host:3001@",
            "host:3001=abc",
        ] {
            assert!(bad.parse::<VolumeSpec>().is_err(), "{bad} should not parse");
        }
        assert_eq!(parse_volume_list("a:1, b:2,").unwrap().len(), 2);
    }

    #[test]
    fn rejects_bad_replica_counts() {
        assert_eq!(
            Placement::new(vols(2), 3).unwrap_err(),
            PlacementError::TooFewVolumes {
                replicas: 3,
                volumes: 2
            }
        );
        assert_eq!(
            Placement::new(vols(2), 0).unwrap_err(),
            PlacementError::ZeroReplicas
        );
        assert_eq!(Placement::new(vec![], 1).unwrap_err(), PlacementError::NoVolumes);
        let mut dup = vols(2);
        dup.push(dup[0].clone());
        assert!(matches!(
            Placement::new(dup, 1),
            Err(PlacementError::Duplicate(_))
        ));
    }

    /// Golden values: if this test fails, placement changed and every
    /// existing cluster would see its keys as misplaced.
    #[test]
    fn golden_placement() {
        let p = Placement::new(vols(5), 3).unwrap();
        assert_eq!(
            addrs(&p.home(b"/photos/a.jpg")),
            GOLDEN_A,
            "placement of /photos/a.jpg changed"
        );
        assert_eq!(addrs(&p.home(b"/k")), GOLDEN_K, "placement of /k changed");
        assert_eq!(
            addrs(&p.order(b"/datasets/2026/part-0001.parquet")),
            GOLDEN_ORDER,
            "full order changed"
        );
    }
    // Computed independently (a 10-line Python version of `score`).
    const GOLDEN_A: [&str; 3] = ["10.0.0.3:3001", "10.0.0.1:3001", "10.0.0.2:3001"];
    const GOLDEN_K: [&str; 3] = ["10.0.0.1:3001", "10.0.0.4:3001", "10.0.0.5:3001"];
    const GOLDEN_ORDER: [&str; 5] = [
        "10.0.0.2:3001",
        "10.0.0.3:3001",
        "10.0.0.5:3001",
        "10.0.0.4:3001",
        "10.0.0.1:3001",
    ];

    #[test]
    fn deterministic_and_distinct() {
        let p = Placement::new(vols(6), 3).unwrap();
        for i in 0..1000 {
            let key = format!("/key/{i}");
            let a = addrs(&p.home(key.as_bytes()));
            assert_eq!(a, addrs(&p.home(key.as_bytes())));
            let set: HashSet<_> = a.iter().collect();
            assert_eq!(set.len(), 3);
        }
    }

    /// Adding one volume to N moves about 1/(N+1) of the keys.
    #[test]
    fn adding_a_volume_moves_about_one_in_n_plus_one() {
        const KEYS: usize = 10_000;
        for n in [3usize, 4, 9] {
            let before = Placement::new(vols(n), 1).unwrap();
            let after = Placement::new(vols(n + 1), 1).unwrap();
            let moved = (0..KEYS)
                .filter(|i| {
                    let k = format!("/k/{i}");
                    before.home(k.as_bytes())[0].addr != after.home(k.as_bytes())[0].addr
                })
                .count();
            let expected = KEYS as f64 / (n + 1) as f64;
            let ratio = moved as f64 / expected;
            assert!(
                (0.9..1.1).contains(&ratio),
                "n={n}: moved {moved}, expected ~{expected}"
            );
        }
        // With 3 replicas on 3 → 4 volumes, a quarter of all replica copies move,
        // and every move goes to the new volume.
        let before = Placement::new(vols(3), 3).unwrap();
        let after = Placement::new(vols(4), 3).unwrap();
        let mut moved_copies = 0;
        for i in 0..KEYS {
            let k = format!("/k/{i}");
            let b = addrs(&before.home(k.as_bytes()));
            let a = addrs(&after.home(k.as_bytes()));
            for addr in &a {
                if !b.contains(addr) {
                    assert_eq!(addr, "10.0.0.4:3001");
                    moved_copies += 1;
                }
            }
        }
        let ratio = moved_copies as f64 / (KEYS * 3) as f64;
        assert!((0.225..0.275).contains(&ratio), "moved {ratio} of copies");
    }

    #[test]
    fn weights_shift_the_share() {
        let mut v = vols(3);
        v[0].weight = 2.0;
        let p = Placement::new(v, 1).unwrap();
        let heavy = (0..10_000)
            .filter(|i| p.home(format!("/w/{i}").as_bytes())[0].addr == "10.0.0.1:3001")
            .count();
        // Expected share 2/4 = 50%.
        assert!((4_700..5_300).contains(&heavy), "heavy volume got {heavy}");
    }

    #[test]
    fn replicas_go_to_distinct_zones() {
        let mut v = vols(6);
        for (i, vol) in v.iter_mut().enumerate() {
            vol.zone = Some(format!("z{}", i % 3));
        }
        let p = Placement::new(v, 3).unwrap();
        for i in 0..1000 {
            let chosen = p.home(format!("/z/{i}").as_bytes());
            let zones: HashSet<_> = chosen.iter().map(|v| v.zone.clone()).collect();
            assert_eq!(zones.len(), 3);
        }
        // Two zones, three replicas: two zones used, third copy fills in.
        let mut v = vols(4);
        for (i, vol) in v.iter_mut().enumerate() {
            vol.zone = Some(format!("z{}", i % 2));
        }
        let p = Placement::new(v, 3).unwrap();
        let chosen = p.home(b"/two-zones");
        assert_eq!(chosen.len(), 3);
        let zones: HashSet<_> = chosen.iter().map(|v| v.zone.clone()).collect();
        assert_eq!(zones.len(), 2);
    }

    #[test]
    fn choose_skips_unusable_and_keeps_order() {
        let p = Placement::new(vols(4), 3).unwrap();
        let key = b"/down";
        let order = addrs(&p.order(key));
        let down = order[1].clone();
        let chosen = addrs(&p.choose(key, |v| v.addr != down));
        assert_eq!(chosen, vec![order[0].clone(), order[2].clone(), order[3].clone()]);
        assert!(!p.is_balanced(key, &chosen));
        assert!(p.is_balanced(key, &[order[2].clone(), order[0].clone(), order[1].clone()]));
        assert_eq!(p.choose(key, |_| false).len(), 0);
    }
}
