//! The report: a Markdown section appended to `bench/RESULTS.md` (every figure, every ratio, each
//! goal met or not) and an SVG chart of throughput and p99 against connections per scenario.

use std::fmt::Write as _;

use crate::load::Measurement;
use crate::server::CoreShare;

/// Which figure a row is, for ratios and the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Ceiling,
    Validate,
    ApiKey,
    Renew,
    Login,
    Isolation,
    Flood,
    SlowClients,
    ScaleCeiling,
    ScaleValidate,
    ScaleLogin,
}

impl Scenario {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ceiling => "ceiling: `GET /healthz`",
            Self::Validate => "validate: `GET /user/me`, session token",
            Self::ApiKey => "api key: `GET /user/me`, API key",
            Self::Renew => "renew: `GET /user/authenticate`",
            Self::Login => "login: `POST /user/authenticate`",
            Self::Isolation => "isolation: validate during a login flood",
            Self::Flood => "isolation: the login flood itself",
            Self::SlowClients => "slow clients: validate with slow bodies open",
            Self::ScaleCeiling => "scale: ceiling, 1M users + sessions",
            Self::ScaleValidate => "scale: validate, 1M users + sessions",
            Self::ScaleLogin => "scale: login, 1M users + sessions",
        }
    }

    /// The ceiling a row of this scenario is read against, when it is.
    pub fn ceiling(self) -> Option<Scenario> {
        match self {
            Self::Validate | Self::ApiKey | Self::Renew => Some(Self::Ceiling),
            Self::ScaleValidate => Some(Self::ScaleCeiling),
            _ => None,
        }
    }

    pub fn is_ceiling(self) -> bool {
        matches!(self, Self::Ceiling | Self::ScaleCeiling)
    }

    pub fn is_login(self) -> bool {
        matches!(self, Self::Login | Self::ScaleLogin)
    }

    fn short(self) -> &'static str {
        match self {
            Self::Ceiling => "ceiling",
            Self::Validate => "validate",
            Self::ApiKey => "api key",
            Self::Renew => "renew",
            Self::Login => "login",
            Self::Isolation => "validate in flood",
            Self::Flood => "login flood",
            Self::SlowClients => "validate, slow bodies",
            Self::ScaleCeiling => "ceiling 1M",
            Self::ScaleValidate => "validate 1M",
            Self::ScaleLogin => "login 1M",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Self::Ceiling => "#222222",
            Self::Validate => "#1f77b4",
            Self::ApiKey => "#2ca02c",
            Self::Renew => "#ff7f0e",
            Self::Login => "#d62728",
            Self::Isolation => "#9467bd",
            Self::Flood => "#e377c2",
            Self::SlowClients => "#bcbd22",
            Self::ScaleCeiling => "#7f7f7f",
            Self::ScaleValidate => "#17becf",
            Self::ScaleLogin => "#8c564b",
        }
    }
}

/// A scenario's points: (connections, throughput, p99 ms).
type Series = (Scenario, Vec<(usize, f64, f64)>);

pub struct Row {
    pub scenario: Scenario,
    pub connections: usize,
    pub measurement: Measurement,
    pub cores: CoreShare,
    /// What this window is read against, measured beside it, per second: for login rows the
    /// argon2id limit's half of the interleaved run the row comes from (the harness hashing
    /// while the server is idle); for rows read
    /// against a ceiling, the ceiling's half of the interleaved run the row comes from (its
    /// round). `None`: nothing was, and the row is read against the run's figures.
    pub beside: Option<f64>,
}

impl Row {
    /// Throughput as a fraction of what was measured beside the window, if anything was.
    pub fn of_beside(&self) -> Option<f64> {
        self.beside
            .map(|b| self.measurement.throughput() / b.max(1e-9))
    }

    /// A login row's fraction of the hashing limit beside it (or the run's).
    pub fn of_limit(&self, run_limit: f64) -> f64 {
        self.of_beside()
            .unwrap_or_else(|| self.measurement.throughput() / run_limit.max(1e-9))
    }
}

/// Everything one run measured.
pub struct Run {
    pub date: String,
    pub commit: String,
    /// Words after the heading (e.g. which server build was measured).
    pub label: Option<String>,
    pub machine: String,
    pub notes: Vec<String>,
    pub argon2_limit: f64,
    /// Cores of the machine: the argon2 limit uses them all, so fewer login connections
    /// cannot reach it.
    pub cores: usize,
    pub rows: Vec<Row>,
    pub peak_rss_small_mib: Option<f64>,
    pub peak_rss_scale_mib: Option<f64>,
    pub scale_users: u64,
}

struct Verdict {
    ratio: String,
    goal: &'static str,
    met: Option<bool>,
}

impl Run {
    fn find(&self, scenario: Scenario, connections: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.connections == connections)
    }

    fn verdict(&self, row: &Row) -> Verdict {
        let throughput = row.measurement.throughput();
        let against = |base: Scenario, goal: &'static str, min: f64, what: &str| match self
            .find(base, row.connections)
        {
            Some(b) if b.measurement.throughput() > 0.0 => {
                let r = throughput / b.measurement.throughput();
                Verdict {
                    ratio: format!("{r:.2} × {what}"),
                    goal,
                    met: Some(r >= min),
                }
            }
            _ => Verdict {
                ratio: "—".into(),
                goal,
                met: None,
            },
        };
        // Read against the ceiling measured in turns with it when there is one: the two come
        // from the same seconds, so what the shared machine gives in them cancels.
        let of_ceiling = |goal: &'static str, min: f64| match (row.of_beside(), row.beside) {
            (Some(r), Some(ceiling)) => Verdict {
                ratio: format!("{r:.2} × ceiling ({}/s in its round)", thousands(ceiling)),
                goal,
                met: Some(r >= min),
            },
            _ => against(Scenario::Ceiling, goal, min, "ceiling"),
        };
        match row.scenario {
            Scenario::Ceiling | Scenario::ScaleCeiling | Scenario::Flood => Verdict {
                ratio: "—".into(),
                goal: "",
                met: None,
            },
            Scenario::Validate | Scenario::ApiKey => of_ceiling("≥ 0.85", 0.85),
            Scenario::Renew => of_ceiling("≥ 0.5", 0.5),
            Scenario::Login => {
                let r = row.of_limit(self.argon2_limit);
                // One connection keeps one core hashing (p=1): the all-core limit needs as
                // many logins in flight as there are cores.
                let reachable = row.connections >= self.cores;
                let beside = row
                    .beside
                    .map(|l| format!(" ({l:.0}/s beside it)"))
                    .unwrap_or_default();
                Verdict {
                    ratio: format!("{r:.2} × argon2 limit{beside}"),
                    goal: if reachable {
                        "≥ 0.85"
                    } else {
                        "— (fewer conns than cores)"
                    },
                    met: reachable.then_some(r >= 0.85),
                }
            }
            Scenario::Isolation | Scenario::SlowClients => {
                let goal = "≥ 0.5 and p99 ≤ 10 ms";
                let mut v = match (row.of_beside(), row.beside) {
                    (Some(r), Some(alone)) => Verdict {
                        ratio: format!("{r:.2} × unloaded ({}/s just before)", thousands(alone)),
                        goal,
                        met: Some(r >= 0.5),
                    },
                    _ => against(Scenario::Validate, goal, 0.5, "unloaded"),
                };
                let p99 = row.measurement.p99_ms();
                v.met = v.met.map(|m| m && p99 <= 10.0);
                v
            }
            // Both read against the ceiling of their own database and round: the two phases are
            // minutes apart, and what the machine gives moves in that time.
            Scenario::ScaleValidate => match (
                row.of_beside(),
                self.find(Scenario::Validate, row.connections)
                    .and_then(Row::of_beside),
            ) {
                (Some(scale), Some(small)) if small > 0.0 => {
                    let r = scale / small;
                    Verdict {
                        ratio: format!("{r:.2} × small database (as fractions of the ceiling)"),
                        goal: "≥ 0.9",
                        met: Some(r >= 0.9),
                    }
                }
                _ => against(Scenario::Validate, "≥ 0.9", 0.9, "small database"),
            },
            // Both read against the hashing limit beside them, which moves with the machine.
            Scenario::ScaleLogin => match self.find(Scenario::Login, row.connections) {
                Some(small) if small.of_limit(self.argon2_limit) > 0.0 => {
                    let r = row.of_limit(self.argon2_limit) / small.of_limit(self.argon2_limit);
                    Verdict {
                        ratio: format!("{r:.2} × small database (as fractions of the limit)"),
                        goal: "≥ 0.9",
                        met: Some(r >= 0.9),
                    }
                }
                _ => Verdict {
                    ratio: "—".into(),
                    goal: "≥ 0.9",
                    met: None,
                },
            },
        }
    }

    /// The Markdown section for `bench/RESULTS.md`.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let label = self
            .label
            .as_deref()
            .map(|l| format!(" — {l}"))
            .unwrap_or_default();
        let _ = writeln!(out, "## {} — commit `{}`{label}\n", self.date, self.commit);
        let _ = writeln!(out, "- Machine: {}", self.machine);
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        let _ = writeln!(
            out,
            "- argon2id limit (m=19456 KiB, t=2, p=1, one thread per core, server stopped; login \
             rows are read against the one measured beside them, server idle): \
             **{:.1} verifications/s**\n",
            self.argon2_limit
        );
        let _ = writeln!(
            out,
            "| scenario | conns | req/s | p50 ms | p99 ms | non-2xx / errors | ratio | goal | met | \
             cores: server / generator / other |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|---|---|---|---|---|");
        let (mut met, mut missed) = (0, 0);
        for row in &self.rows {
            let m = &row.measurement;
            let v = self.verdict(row);
            let met_text = match v.met {
                Some(true) => {
                    met += 1;
                    "yes"
                }
                Some(false) => {
                    missed += 1;
                    "**no**"
                }
                None => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
                row.scenario.label(),
                row.connections,
                thousands(m.throughput()),
                m.p50_ms(),
                m.p99_ms(),
                m.errors_text(),
                v.ratio,
                v.goal,
                met_text,
                row.cores.text(),
            );
        }
        let rss = |v: Option<f64>| v.map_or("—".to_owned(), |m| format!("{m:.0} MiB"));
        let scale_met = self.peak_rss_scale_mib.map(|m| m <= 300.0);
        match scale_met {
            Some(true) => met += 1,
            Some(false) => missed += 1,
            None => {}
        }
        let _ = writeln!(
            out,
            "\nPeak RSS of the server (VmHWM): {} with the small database, {} with {} users and \
             sessions; goal ≤ 300 MiB: {}.\n",
            rss(self.peak_rss_small_mib),
            rss(self.peak_rss_scale_mib),
            thousands(self.scale_users as f64),
            match scale_met {
                Some(true) => "met",
                Some(false) => "**not met**",
                None => "not measured",
            }
        );
        let _ = writeln!(out, "Goals met in this run: {met} of {}.\n", met + missed);
        out
    }

    /// Throughput and p99 against connections, one line per scenario, log scales.
    pub fn svg(&self) -> String {
        let scenarios = [
            Scenario::Ceiling,
            Scenario::Validate,
            Scenario::ApiKey,
            Scenario::Renew,
            Scenario::Login,
            Scenario::Isolation,
            Scenario::SlowClients,
            Scenario::ScaleValidate,
            Scenario::ScaleLogin,
        ];
        let mut conns: Vec<usize> = self.rows.iter().map(|r| r.connections).collect();
        conns.sort_unstable();
        conns.dedup();
        let series: Vec<Series> = scenarios
            .iter()
            .map(|&s| {
                let points = self
                    .rows
                    .iter()
                    .filter(|r| r.scenario == s)
                    .map(|r| {
                        (
                            r.connections,
                            r.measurement.throughput(),
                            r.measurement.p99_ms(),
                        )
                    })
                    .collect();
                (s, points)
            })
            .filter(|(_, p): &Series| !p.is_empty())
            .collect();
        let (width, height) = (960.0, 470.0);
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r#"<rect width="100%" height="100%" fill="white"/><text x="16" y="22" font-size="15" font-weight="bold">coreauth bench — {} — {} — commit {}</text>"#,
            escape(self.label.as_deref().unwrap_or("")),
            escape(&self.date),
            escape(&self.commit)
        );
        let panels = [
            ("throughput (2xx req/s, log scale)", 0_usize),
            ("p99 latency (ms, log scale)", 1),
        ];
        for (i, (title, which)) in panels.iter().enumerate() {
            let x0 = 70.0 + i as f64 * 470.0;
            let (y0, w, h) = (50.0, 380.0, 300.0);
            let values: Vec<f64> = series
                .iter()
                .flat_map(|(_, p)| p.iter().map(|&(_, t, l)| if *which == 0 { t } else { l }))
                .filter(|v| v.is_finite() && *v > 0.0)
                .collect();
            let lo = values
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .max(1e-3);
            let hi = values.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
            let (lo_exp, hi_exp) = (lo.log10().floor(), hi.log10().ceil());
            let y_of = |v: f64| y0 + h - (v.log10() - lo_exp) / (hi_exp - lo_exp).max(1.0) * h;
            let x_of = |c: usize| {
                let idx = conns.iter().position(|&k| k == c).unwrap_or(0) as f64;
                x0 + 30.0 + idx * (w - 60.0) / ((conns.len().max(2) - 1) as f64)
            };
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" font-weight="bold">{}</text><rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##,
                x0,
                y0 - 8.0,
                title
            );
            let mut e = lo_exp;
            while e <= hi_exp {
                let y = y_of(10f64.powf(e));
                let _ = writeln!(
                    svg,
                    r##"<line x1="{x0}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                    x0 + w,
                    x0 - 6.0,
                    y + 4.0,
                    axis_label(10f64.powf(e))
                );
                e += 1.0;
            }
            for &c in &conns {
                let x = x_of(c);
                let _ = writeln!(
                    svg,
                    r##"<line x1="{x:.1}" x2="{x:.1}" y1="{y0}" y2="{}" stroke="#f0f0f0"/><text x="{x:.1}" y="{}" text-anchor="middle">{c}</text>"##,
                    y0 + h,
                    y0 + h + 16.0
                );
            }
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle">connections</text>"#,
                x0 + w / 2.0,
                y0 + h + 32.0
            );
            for (scenario, points) in &series {
                let coords: Vec<String> = points
                    .iter()
                    .filter_map(|&(c, t, l)| {
                        let v = if *which == 0 { t } else { l };
                        (v.is_finite() && v > 0.0).then(|| format!("{:.1},{:.1}", x_of(c), y_of(v)))
                    })
                    .collect();
                let color = scenario.color();
                let _ = writeln!(
                    svg,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                    coords.join(" ")
                );
                for point in &coords {
                    if let Some((x, y)) = point.split_once(',') {
                        let _ =
                            writeln!(svg, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
                    }
                }
            }
        }
        for (i, (scenario, _)) in series.iter().enumerate() {
            let x = 70.0 + (i % 4) as f64 * 220.0;
            let y = 410.0 + (i / 4) as f64 * 20.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{x}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                x + 24.0,
                y - 4.0,
                y - 4.0,
                scenario.color(),
                x + 30.0,
                y,
                scenario.short()
            );
        }
        let _ = writeln!(svg, "</svg>");
        svg
    }
}

fn axis_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", thousands(v / 1000.0))
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// `12345.6` → `12,346`.
pub fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: Scenario, connections: usize, per_second: u64, beside: Option<f64>) -> Row {
        Row {
            scenario,
            connections,
            measurement: Measurement::per_second(per_second),
            cores: CoreShare::default(),
            beside,
        }
    }

    fn run(rows: Vec<Row>) -> Run {
        Run {
            date: String::new(),
            commit: String::new(),
            label: None,
            machine: String::new(),
            notes: Vec::new(),
            argon2_limit: 100.0,
            cores: 2,
            rows,
            peak_rss_small_mib: None,
            peak_rss_scale_mib: None,
            scale_users: 0,
        }
    }

    #[test]
    fn a_row_is_read_against_the_ceiling_of_its_own_round() {
        // The ceiling row shown (median window) is 60,000/s; the validate window was taken
        // beside a ceiling window of 50,000/s: 45,000 / 50,000 = 0.90, not 45,000 / 60,000.
        let run = run(vec![
            row(Scenario::Ceiling, 16, 60_000, None),
            row(Scenario::Validate, 16, 45_000, Some(50_000.0)),
            row(Scenario::ApiKey, 16, 40_000, Some(50_000.0)),
        ]);
        let validate = run.verdict(&run.rows[1]);
        assert_eq!(validate.ratio, "0.90 × ceiling (50,000/s in its round)");
        assert_eq!(validate.met, Some(true));
        let key = run.verdict(&run.rows[2]);
        assert_eq!(key.ratio, "0.80 × ceiling (50,000/s in its round)");
        assert_eq!(key.met, Some(false));
    }

    #[test]
    fn without_a_ceiling_beside_it_a_row_is_read_against_the_ceiling_row() {
        let run = run(vec![
            row(Scenario::Ceiling, 16, 60_000, None),
            row(Scenario::Renew, 16, 27_000, None),
        ]);
        let renew = run.verdict(&run.rows[1]);
        assert_eq!(renew.ratio, "0.45 × ceiling");
        assert_eq!(renew.met, Some(false));
    }

    #[test]
    fn scale_validate_compares_fractions_of_each_databases_ceiling() {
        // The scale phase ran on a slower minute: 40,000/s against 50,000/s there is the same
        // 0.8 of the ceiling as 48,000/s against 60,000/s on the small database.
        let run = run(vec![
            row(Scenario::Validate, 16, 48_000, Some(60_000.0)),
            row(Scenario::ScaleCeiling, 16, 50_000, None),
            row(Scenario::ScaleValidate, 16, 40_000, Some(50_000.0)),
        ]);
        let scale = run.verdict(&run.rows[2]);
        assert_eq!(
            scale.ratio,
            "1.00 × small database (as fractions of the ceiling)"
        );
        assert_eq!(scale.met, Some(true));
    }

    #[test]
    fn isolation_is_read_against_validate_alone_just_before_it() {
        // The validate row (its median round beside the ceiling) read 60,000/s; the window
        // during the flood, 27,000/s, came right after one of validate alone at 50,000/s.
        let run = run(vec![
            row(Scenario::Validate, 16, 60_000, Some(65_000.0)),
            row(Scenario::Isolation, 16, 27_000, Some(50_000.0)),
            row(Scenario::Isolation, 64, 20_000, Some(50_000.0)),
        ]);
        let isolation = run.verdict(&run.rows[1]);
        assert_eq!(isolation.ratio, "0.54 × unloaded (50,000/s just before)");
        assert_eq!(isolation.met, Some(true));
        assert_eq!(run.verdict(&run.rows[2]).met, Some(false));
    }

    #[test]
    fn numbers_get_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(0.4), "0");
    }
}
