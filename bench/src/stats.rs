//! Samples, rows and the Markdown table.

/// Repeated measurements of one thing.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
    /// Pushes still to be ignored (warm-up runs).
    skip: usize,
}

impl Samples {
    pub fn new() -> Samples {
        Samples {
            values: vec![],
            skip: 0,
        }
    }

    /// Samples whose first push is a warm-up run, not counted.
    pub fn after_warm_up() -> Samples {
        Samples {
            skip: 1,
            ..Samples::new()
        }
    }

    /// Adds every value of `other` (its warm-up already skipped).
    pub fn extend(&mut self, other: Samples) {
        self.values.extend(other.values);
    }

    pub fn push(&mut self, v: f64) {
        if self.skip > 0 {
            self.skip -= 1;
        } else {
            self.values.push(v);
        }
    }

    /// The `p`-th percentile (0–100), nearest rank; `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let mut v = self.values.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        Some(v[rank.clamp(1, v.len()) - 1])
    }

    pub fn median(&self) -> Option<f64> {
        let mut v = self.values.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }

    /// `median (min–max)`, or `—` when there is nothing.
    fn show(&self) -> String {
        let Some(m) = self.median() else {
            return "—".into();
        };
        let min = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if self.values.len() == 1 {
            num(m)
        } else {
            format!("{} ({}–{})", num(m), num(min), num(max))
        }
    }
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One line of the table.
pub struct Row {
    what: String,
    trove: Samples,
    reference: Samples,
    target: String,
    lower_is_better: bool,
    /// Shown instead of the Trove samples (several numbers in one cell).
    text: Option<String>,
}

impl Row {
    pub fn new(what: &str, trove: Samples, reference: Samples, target: &str) -> Row {
        Row {
            what: what.into(),
            trove,
            reference,
            target: target.into(),
            lower_is_better: false,
            text: None,
        }
    }

    /// A cell of text with no reference (latency percentiles).
    pub fn text(what: &str, text: String, target: &str) -> Row {
        Row {
            text: Some(text),
            ..Row::new(what, Samples::new(), Samples::new(), target)
        }
    }

    /// A single number with no reference (memory).
    pub fn single(what: &str, value: f64, target: &str) -> Row {
        let mut s = Samples::new();
        s.push(value);
        Row::new(what, s, Samples::new(), target)
    }

    /// For latencies: the ratio is reference / Trove, so that > 1 is better.
    pub fn lower_is_better(mut self) -> Row {
        self.lower_is_better = true;
        self
    }

    fn ratio(&self) -> String {
        match (self.trove.median(), self.reference.median()) {
            (Some(t), Some(r)) if t > 0.0 && r > 0.0 => {
                let ratio = if self.lower_is_better { r / t } else { t / r };
                format!("{ratio:.2}×")
            }
            _ => "—".into(),
        }
    }
}

/// The Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measurement | Trove | reference (nginx) | Trove / reference | target |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.what,
            r.text.clone().unwrap_or_else(|| r.trove.show()),
            r.reference.show(),
            r.ratio(),
            r.target
        ));
    }
    out.push_str(
        "\nReferences: GET = nginx serving the same file (sendfile); PUT = 3 parallel PUTs of the same bytes \
         to 3 nginx WebDAV servers (the machine's fan-out limit; nginx does not fsync); range = nginx \
         range GET; redirects = nginx `return 302`. Medians, with min–max over the runs.\n",
    );
    out
}

/// What the numbers were measured on.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|kb| kb as f64 / (1 << 20) as f64)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {cores} cores ({cpu}), {mem_gib:.0} GiB RAM, Linux {}.\n",
        kernel.trim()
    )
}
