//! `coreauth-bench`: runs every scenario of the benchmark against the release `coreauth` binary
//! and appends the figures, with their ratios to limits measured in the same run, to
//! `bench/RESULTS.md`, and draws `bench/chart.svg`. `scripts/bench` builds and runs it; see
//! `bench/README.md` for the method.

mod api;
mod hashlimit;
mod load;
mod report;
#[cfg(feature = "saml")]
mod saml;
mod scim;
mod seed;
mod server;
mod slow;
mod soak;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use load::{Load, LoadSettings, LocalWork, Turn, Workload};
use report::{Row, Run, Scenario};
use seed::Backend;
use server::{CpuMark, Server};

#[derive(Parser)]
#[command(about = "coreauth benchmark: every scenario, ratios against limits of the same run")]
struct Args {
    /// The release coreauth binary.
    #[arg(long, default_value = "target/release/coreauth")]
    coreauth: PathBuf,
    /// Markdown file the results are appended to.
    #[arg(long, default_value = "bench/RESULTS.md")]
    results: PathBuf,
    /// SVG chart written (replaced) by the run.
    #[arg(long, default_value = "bench/chart.svg")]
    chart: PathBuf,
    /// Connection counts each scenario runs at.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    connections: Vec<usize>,
    /// Seconds of warm-up before each measured window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured per window (per workload, in an interleaved run).
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Rounds per scenario and connection count, taken in turns with the other scenarios at
    /// that count (validate beside the ceiling, API key beside it, …, then again): each row is
    /// the round of median ratio (or throughput), so a burst of noise from elsewhere on the
    /// machine moves one round of one scenario rather than a whole ratio. Five: with three,
    /// ratios at 16 connections moved by up to a tenth between runs on this shared host.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per phase when a scenario runs interleaved with its ceiling (validate, API key,
    /// renew and scale validate, each against the ceiling: A B B A …, see `load::run_interleaved`).
    /// A tenth of a second: with a quarter or half, ratios of the rounds of one run spread
    /// further (bench/README.md).
    #[arg(long, default_value_t = 0.1)]
    phase: f64,
    /// Seconds per phase when a login window runs interleaved with the argon2id limit (the
    /// harness hashing on every core while the server is idle, then logins, then logins, then
    /// hashing, …). Longer than `--phase`: each login phase lasts until its last answer is in,
    /// about half a second at 64 connections, and the tail of each phase, where one core may
    /// have no hash left to do, costs a smaller share of a longer phase.
    #[arg(long, default_value_t = 0.5)]
    login_phase: f64,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    generator_threads: usize,
    /// Users (and sessions) of the small database.
    #[arg(long, default_value_t = 1_000)]
    small_users: u64,
    /// Users (and sessions) of the scale scenario.
    #[arg(long, default_value_t = 1_000_000)]
    scale_users: u64,
    /// Skip the scale scenario.
    #[arg(long)]
    skip_scale: bool,
    /// Run only these scenarios (ceiling, validate, apikey, renew, login, isolation,
    /// slowclients, scale);
    /// for profiling one path. Ratios need their reference scenario in the same run.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Distinct sessions the validate and renew loads cycle through (and users logging in).
    #[arg(long, default_value_t = 1_000)]
    sessions: u64,
    /// Distinct API keys the api key load cycles through.
    #[arg(long, default_value_t = 64)]
    keys: u64,
    /// Connections of the login flood in the isolation scenario.
    #[arg(long, default_value_t = 64)]
    flood: usize,
    /// Slow clients (a request head and one byte of its body, then nothing) open during the
    /// slowclients scenario.
    #[arg(long, default_value_t = 1_000)]
    slow_clients: usize,
    /// Where databases and server logs go (removed at the end unless --keep).
    #[arg(long)]
    workdir: Option<PathBuf>,
    #[arg(long)]
    keep: bool,
    /// Words put after the heading of this run's section (e.g. which server build it measured).
    #[arg(long)]
    label: Option<String>,
    /// Run on PostgreSQL instead of SQLite: a server URL such as
    /// `postgres://postgres@127.0.0.1:5432/postgres`, on which the run creates (and at the end
    /// drops) the databases `coreauth_bench_small` and `coreauth_bench_scale`.
    #[arg(long)]
    postgres: Option<String>,
    /// Extra settings for the servers, `NAME=VALUE` (e.g. `COREAUTH_SESSION_CACHE_TTL=0s`), to
    /// measure something other than the defaults; the run's notes list them.
    #[arg(long = "server-env", value_parser = parse_setting)]
    server_env: Vec<(String, String)>,
    /// Instead of the scenarios, a soak run of this many minutes on the small database: logins
    /// at `--soak-share` of the login capacity measured first, with validations and renewals
    /// (`soak.rs`). Fails when any answer was an error.
    #[arg(long)]
    soak: Option<f64>,
    /// Instead of the scenarios, the SAML figure (needs the harness built with `--features
    /// saml`): SAML sign-ins per second at the ACS against password logins (`saml.rs`).
    #[arg(long)]
    saml: bool,
    /// Instead of the scenarios, the SCIM figure: 10,000 users provisioned through
    /// `/scim/v2/Users` as Entra ID does it, then deactivated, against password logins
    /// (`scim.rs`).
    #[arg(long)]
    scim: bool,
    /// The share of the measured login capacity the soak logs in at.
    #[arg(long, default_value_t = 0.8)]
    soak_share: f64,
    /// Print the Markdown instead of appending it to the results file.
    #[arg(long)]
    dry_run: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.coreauth.exists() {
        bail!(
            "{} not found: build it with cargo build --release",
            args.coreauth.display()
        );
    }
    let coreauth = std::fs::canonicalize(&args.coreauth)?;
    let workdir = args.workdir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("coreauth-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&workdir)?;
    if let Some(minutes) = args.soak {
        let result = soak::soak_run(&args, &coreauth, &workdir, minutes).await;
        return section(&args, &workdir, "soak", result);
    }
    if args.scim {
        let result = scim::scim_run(&args, &coreauth, &workdir).await;
        return section(&args, &workdir, "SCIM run", result);
    }
    if args.saml {
        #[cfg(feature = "saml")]
        {
            let result = saml::saml_run(&args, &coreauth, &workdir).await;
            return section(&args, &workdir, "SAML run", result);
        }
        #[cfg(not(feature = "saml"))]
        bail!("--saml needs the harness built with --features saml (./scripts/bench --saml)");
    }
    let result = bench(&args, &coreauth, &workdir).await;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    let run = result?;
    let markdown = run.markdown();
    if args.dry_run {
        println!("{markdown}");
    } else {
        append(&args.results, &markdown)?;
        std::fs::write(&args.chart, run.svg())?;
        println!("{markdown}");
        println!(
            "appended to {}, chart in {}",
            args.results.display(),
            args.chart.display()
        );
    }
    Ok(())
}

async fn bench(args: &Args, coreauth: &Path, workdir: &Path) -> anyhow::Result<Run> {
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let settings = LoadSettings {
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        threads: args.generator_threads,
    };
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let hash = seed::password_hash()?;
    let argon2_limit = if wanted("login") || wanted("scale") {
        say(&format!("argon2id limit on {cores} threads"));
        let limit = hashlimit::verifications_per_second(&hash, cores, Duration::from_secs(3))?;
        say(&format!("  {limit:.1} verifications/s"));
        limit
    } else {
        f64::NAN
    };

    let mut rows = Vec::new();
    let turns_at = |connections| Turns {
        connections,
        settings,
        rounds: args.rounds,
        phase: Duration::from_secs_f64(args.phase),
        login_phase: Duration::from_secs_f64(args.login_phase),
        hash: &hash,
        cores,
    };
    let mut notes = Vec::new();
    let sign_us = hashlimit::signing_micros(4000)?;
    notes.push(format!(
        "Signing one session token (Ed25519, what each login and renewal pays) takes {sign_us:.1} \
         µs of one core here: signing alone caps renewals near {} per second on {cores} cores.",
        report::thousands(cores as f64 * 1e6 / sign_us)
    ));

    let backend = backend_of(args);
    let database = backend.describe().await?;
    say(&format!("database: {database}"));
    // The small database: every scenario but scale.
    let Small {
        server: small,
        users,
        tokens,
        seeded,
        ..
    } = small_database(args, &backend, coreauth, workdir, &hash).await?;
    let addr = small.addr;
    let keys = create_keys(addr, &tokens[..tokens.len().min(args.keys as usize)]).await?;
    let logins = login_bodies(&users);
    let ceiling = Workload::new(vec![load::get_request(addr, "/healthz", None)])?;
    let validate = Workload::get_with(addr, "/user/me", &tokens)?;
    let apikey = Workload::get_with(addr, "/user/me", &keys)?;
    let renew = Workload::get_with(addr, "/user/authenticate", &tokens)?;
    let login = Workload::post_json(addr, "/user/authenticate", &logins)?;
    for &c in &args.connections {
        let scenarios: Vec<_> = [
            ("ceiling", Scenario::Ceiling, &ceiling),
            ("validate", Scenario::Validate, &validate),
            ("apikey", Scenario::ApiKey, &apikey),
            ("renew", Scenario::Renew, &renew),
            ("login", Scenario::Login, &login),
        ]
        .into_iter()
        .filter(|(name, _, _)| wanted(name))
        .map(|(_, scenario, workload)| (scenario, workload))
        .collect();
        rows.extend(measure_in_turns(&small, &scenarios, &turns_at(c))?);
    }
    for &c in args.connections.iter().filter(|_| wanted("isolation")) {
        say(&format!(
            "isolation: validate × {c} alone, then during a login flood × {}",
            args.flood
        ));
        rows.extend(measure_isolation(
            &small,
            &validate,
            &login,
            args.flood,
            &turns_at(c),
        )?);
    }
    for &c in args.connections.iter().filter(|_| wanted("slowclients")) {
        say(&format!(
            "slow clients: validate × {c} alone, then with {} slow bodies open",
            args.slow_clients
        ));
        rows.push(measure_with_slow_clients(
            &small,
            &validate,
            args.slow_clients,
            &turns_at(c),
        )?);
    }
    let peak_rss_small_mib = small.peak_rss_mib();
    small.stop()?;
    backend.remove("coreauth_bench_small").await?;
    notes.push(format!(
        "Small database: {} users, each a member of one org with one live session, seeded in \
         {:.1} s; loads cycle through {} sessions ({} API keys, {} users logging in).",
        report::thousands(args.small_users as f64),
        seeded.as_secs_f64(),
        tokens.len(),
        keys.len(),
        logins.len()
    ));

    let mut peak_rss_scale_mib = None;
    if !args.skip_scale && wanted("scale") {
        let scale_dir = workdir.join("scale");
        std::fs::create_dir_all(&scale_dir)?;
        let scale_url = backend.create(&scale_dir, "coreauth_bench_scale").await?;
        seed::migrate(coreauth, &scale_url, &scale_dir)?;
        say(&format!("seeding {} users and sessions", args.scale_users));
        let seeded = seed::seed(&scale_url, args.scale_users, &hash).await?;
        say(&format!("  seeded in {:.1} s", seeded.as_secs_f64()));
        let size = backend.size_mib(&scale_url).await.unwrap_or(0.0);
        let scale = Server::start(coreauth, &scale_url, &scale_dir, &args.server_env).await?;
        let addr = scale.addr;
        let users = seed::spread(args.scale_users, args.sessions);
        let tokens = seed::session_tokens(&scale_url, &users).await?;
        let ceiling = Workload::new(vec![load::get_request(addr, "/healthz", None)])?;
        let validate = Workload::get_with(addr, "/user/me", &tokens)?;
        let login = Workload::post_json(addr, "/user/authenticate", &login_bodies(&users))?;
        let scenarios = [
            (Scenario::ScaleCeiling, &ceiling),
            (Scenario::ScaleValidate, &validate),
            (Scenario::ScaleLogin, &login),
        ];
        for &c in &args.connections {
            rows.extend(measure_in_turns(&scale, &scenarios, &turns_at(c))?);
        }
        peak_rss_scale_mib = scale.peak_rss_mib();
        scale.stop()?;
        backend.remove("coreauth_bench_scale").await?;
        notes.push(format!(
            "Scale database: {} users + {} live sessions seeded in {:.1} s ({:.0} MiB); \
             the loads cycle through {} of them spread over the whole range.",
            report::thousands(args.scale_users as f64),
            report::thousands(args.scale_users as f64),
            seeded.as_secs_f64(),
            size,
            tokens.len()
        ));
    }

    // Other processes can only make hashing slower: the best of two measurements, one at each
    // end of the run, is the better estimate of what the cores can do.
    let mut argon2_limit = argon2_limit;
    if argon2_limit.is_finite() {
        say("argon2id limit again, at the end of the run");
        let again = hashlimit::verifications_per_second(&hash, cores, Duration::from_secs(3))?;
        say(&format!("  {again:.1} verifications/s"));
        notes.push(format!(
            "argon2id limit measured at the start and at the end of the run: {argon2_limit:.1} \
             and {again:.1} verifications/s; the higher is used."
        ));
        argon2_limit = argon2_limit.max(again);
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    notes.insert(
        0,
        format!(
            "Load average before / after the run: {} / {} (the machine is shared: other \
             builds may have been running; the `other` cores column shows how much).",
            first_field(&load_before),
            first_field(&load_after)
        ),
    );
    notes.insert(
        1,
        format!(
            "Server: release `coreauth serve` on {}, `COREAUTH_LOG=warn`, throttle \
             limits raised (every request comes from 127.0.0.1), every other setting at its \
             default{}. Load generator: the bench crate's closed-loop HTTP/1.1 keep-alive \
             client on {} thread(s), on the same machine. Each scenario and connection count is \
             measured in {} rounds, in turns with the other scenarios at that count. Validate, \
             API key and renew (and scale validate) each run interleaved with the ceiling on the \
             same connections, in phases of {:.1} s (ceiling, scenario, scenario, ceiling, …; \
             no request crosses from one phase into the next), {:.0} s of each after {:.0} s of \
             warm-up, and are read against the ceiling of their own interleaved run: the two \
             figures come from the same seconds. Login windows run interleaved the same way \
             with the argon2id limit (the harness hashing on every core while the server is \
             idle), in phases of {:.1} s, {:.0} s of each after {:.0} s of warm-up, and are \
             read against the limit of their own run. Validate during a login flood is read \
             against a window of validate alone on the same connections just before it, in \
             each round. Each row \
             is the round of median ratio (median throughput for rows read against nothing, \
             and for the ceiling, over all its interleaved halves). The cores column is CPU \
             time over wall time (2.00 = both cores busy), for interleaved rows over their own \
             phases.",
            database,
            server_env_note(&args.server_env),
            args.generator_threads,
            args.rounds,
            args.phase,
            args.duration,
            args.warmup,
            args.login_phase,
            args.duration,
            args.warmup
        ),
    );
    Ok(Run {
        date: now_text()?,
        commit: commit(),
        // The heading names the database, so the two sections of one run are told apart.
        label: Some(match (&backend, &args.label) {
            (Backend::Sqlite, None) => "SQLite".to_owned(),
            (Backend::Postgres { .. }, None) => "PostgreSQL".to_owned(),
            (Backend::Sqlite, Some(label)) => format!("SQLite — {label}"),
            (Backend::Postgres { .. }, Some(label)) => format!("PostgreSQL — {label}"),
        }),
        machine: machine(cores),
        notes,
        argon2_limit,
        cores,
        rows,
        peak_rss_small_mib,
        peak_rss_scale_mib,
        scale_users: if peak_rss_scale_mib.is_none() {
            0
        } else {
            args.scale_users
        },
    })
}

/// How the rounds of one connection count are taken.
struct Turns<'a> {
    connections: usize,
    settings: LoadSettings,
    rounds: usize,
    /// Phase length of the interleaved runs.
    phase: Duration,
    /// Phase length of the login windows' runs, interleaved with the argon2id limit.
    login_phase: Duration,
    /// The bench password's hash, for the argon2id limit measured beside each login window.
    hash: &'a str,
    cores: usize,
}

/// `rounds` rounds of every scenario, and for each scenario the window of median throughput, or
/// of median ratio to what was measured beside it. A scenario read against a ceiling (validate,
/// API key, renew, scale validate) runs interleaved with the ceiling on the same connections
/// (`load::run_interleaved`), and is read against the ceiling of that same run; the ceiling's
/// row is the median of all its interleaved halves. A login window runs interleaved the same
/// way with the argon2id limit (hashing on every core while the server is idle) and is read
/// against it. On a shared machine what the
/// cores give moves from second to second; a ratio of figures taken over the same seconds
/// cancels that.
fn measure_in_turns(
    server: &Server,
    scenarios: &[(Scenario, &Workload)],
    turns: &Turns,
) -> anyhow::Result<Vec<Row>> {
    let ceiling = scenarios.iter().position(|(s, _)| s.is_ceiling());
    let beside_ceiling = |scenario: Scenario| scenario.ceiling().is_some() && ceiling.is_some();
    let ceiling_only_beside = scenarios.iter().any(|(s, _)| beside_ceiling(*s));
    let mut windows: Vec<Vec<Row>> = scenarios.iter().map(|_| Vec::new()).collect();
    for _ in 0..turns.rounds.max(1) {
        for (i, &(scenario, workload)) in scenarios.iter().enumerate() {
            if scenario.is_ceiling() && ceiling_only_beside {
                // Measured in turns with each scenario read against it, below.
                continue;
            }
            if let (true, Some(c)) = (beside_ceiling(scenario), ceiling) {
                let [ceiling_row, mut row] =
                    measure_interleaved(server, [scenarios[c], (scenario, workload)], turns)?;
                row.beside = Some(ceiling_row.measurement.throughput());
                windows[c].push(ceiling_row);
                windows[i].push(row);
                continue;
            }
            let row = if scenario.is_login() {
                measure_beside_limit(server, scenario, workload, turns)?
            } else {
                measure(
                    server,
                    scenario,
                    workload,
                    turns.connections,
                    turns.settings,
                )?
            };
            windows[i].push(row);
        }
    }
    windows
        .into_iter()
        .map(|mut taken| {
            let key = |row: &Row| row.of_beside().unwrap_or(row.measurement.throughput());
            taken.sort_by(|a, b| key(a).total_cmp(&key(b)));
            let middle = taken.len() / 2;
            taken.into_iter().nth(middle).context("no window measured")
        })
        .collect()
}

fn measure(
    server: &Server,
    scenario: Scenario,
    workload: &Workload,
    connections: usize,
    settings: LoadSettings,
) -> anyhow::Result<Row> {
    let mark = CpuMark::now(server);
    let load = Load {
        workload: workload.clone(),
        connections,
    };
    let measurement = load::run(server.addr, vec![load], settings)?
        .pop()
        .context("no measurement")?;
    let cores = mark.share(server);
    report_line(scenario, connections, &measurement);
    Ok(Row {
        scenario,
        connections,
        measurement,
        cores,
        beside: None,
    })
}

/// Two scenarios in turns on the same connections: a row for each.
fn measure_interleaved(
    server: &Server,
    pair: [(Scenario, &Workload); 2],
    turns: &Turns,
) -> anyhow::Result<[Row; 2]> {
    let halves = load::run_interleaved(
        server.addr,
        pair.map(|(_, w)| Turn::Requests(w.clone())),
        turns.connections,
        turns.settings,
        turns.phase,
        server.pid,
    )?;
    let row = |scenario: Scenario, half: load::Half| {
        report_line(scenario, turns.connections, &half.measurement);
        Row {
            scenario,
            connections: turns.connections,
            measurement: half.measurement,
            cores: half.cores,
            beside: None,
        }
    };
    let [first, second] = halves;
    Ok([row(pair[0].0, first), row(pair[1].0, second)])
}

/// Validate during a login flood, in `rounds` rounds: in each, a window of validate alone on
/// the same connections, then one with `flood` more connections sending logins, read against
/// the window just before it. Both rows (validate, and the flood itself) are those of the round
/// of median ratio, as for the other scenarios: a slow stretch of the host then spoils one
/// round rather than the row. Until 2026-12-04 the row was one window, read against the
/// validate row (measured in turns with the ceiling, tens of seconds earlier), and it read
/// 0.45 in one run on a host that gave the same server cores some 40 % fewer answers.
fn measure_isolation(
    server: &Server,
    validate: &Workload,
    login: &Workload,
    flood: usize,
    turns: &Turns,
) -> anyhow::Result<[Row; 2]> {
    let checked = Load {
        workload: validate.clone(),
        connections: turns.connections,
    };
    let flooding = Load {
        workload: login.clone(),
        connections: flood,
    };
    let mut rounds = Vec::new();
    for _ in 0..turns.rounds.max(1) {
        let alone = measure(
            server,
            Scenario::Validate,
            validate,
            turns.connections,
            turns.settings,
        )?;
        let mark = CpuMark::now(server);
        let mut measured = load::run(
            server.addr,
            vec![checked.clone(), flooding.clone()],
            turns.settings,
        )?
        .into_iter();
        let cores = mark.share(server);
        let (Some(v), Some(f)) = (measured.next(), measured.next()) else {
            bail!("the isolation loads did not report");
        };
        report_line(Scenario::Isolation, turns.connections, &v);
        let row = |scenario, connections, measurement, beside| Row {
            scenario,
            connections,
            measurement,
            cores,
            beside,
        };
        rounds.push([
            row(
                Scenario::Isolation,
                turns.connections,
                v,
                Some(alone.measurement.throughput()),
            ),
            row(Scenario::Flood, flood, f, None),
        ]);
    }
    let ratio = |round: &[Row; 2]| round[0].of_beside().unwrap_or(0.0);
    rounds.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let middle = rounds.len() / 2;
    rounds.into_iter().nth(middle).context("no round measured")
}

/// Validate with `slow` slow clients open (`slow::SlowClients`), in `rounds` rounds: in each, a
/// window of validate alone on the same connections, then one with the slow clients open, read
/// against the window just before it. The row is the round of median ratio.
fn measure_with_slow_clients(
    server: &Server,
    validate: &Workload,
    slow: usize,
    turns: &Turns,
) -> anyhow::Result<Row> {
    let mut rounds = Vec::new();
    for _ in 0..turns.rounds.max(1) {
        let alone = measure(
            server,
            Scenario::Validate,
            validate,
            turns.connections,
            turns.settings,
        )?;
        let clients = slow::SlowClients::start(server.addr, slow)?;
        let measured = measure(
            server,
            Scenario::SlowClients,
            validate,
            turns.connections,
            turns.settings,
        );
        let cut_off = clients.stop()?;
        say(&format!(
            "  slow clients cut off by the server and reopened: {cut_off}"
        ));
        let mut row = measured?;
        row.beside = Some(alone.measurement.throughput());
        rounds.push(row);
    }
    let ratio = |row: &Row| row.of_beside().unwrap_or(0.0);
    rounds.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let middle = rounds.len() / 2;
    rounds.into_iter().nth(middle).context("no round measured")
}

/// A login window in turns with the argon2id limit (`hashlimit::verifications` on every core,
/// while no login is in flight), read against the limit's phases.
fn measure_beside_limit(
    server: &Server,
    scenario: Scenario,
    workload: &Workload,
    turns: &Turns,
) -> anyhow::Result<Row> {
    let (hash, cores) = (turns.hash.to_owned(), turns.cores);
    let limit: LocalWork = Arc::new(move |length| hashlimit::verifications(&hash, cores, length));
    let [limit, logins] = load::run_interleaved(
        server.addr,
        [Turn::Local(limit), Turn::Uncached(workload.clone())],
        turns.connections,
        turns.settings,
        turns.login_phase,
        server.pid,
    )?;
    let limit = limit.measurement.throughput();
    say(&format!(
        "  argon2id limit in its turns: {limit:.1} verifications/s"
    ));
    report_line(scenario, turns.connections, &logins.measurement);
    Ok(Row {
        scenario,
        connections: turns.connections,
        measurement: logins.measurement,
        cores: logins.cores,
        beside: Some(limit),
    })
}

fn report_line(scenario: Scenario, connections: usize, m: &load::Measurement) {
    say(&format!(
        "{:<48} c={:<3} {:>9} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
        scenario.label(),
        connections,
        report::thousands(m.throughput()),
        m.p50_ms(),
        m.p99_ms(),
        m.errors_text()
    ));
}

/// Ends a run that measures one section (the soak, the SAML figure): appends it to the results
/// unless dry, and fails when it saw errors.
fn section(
    args: &Args,
    workdir: &Path,
    what: &str,
    result: anyhow::Result<soak::Soak>,
) -> anyhow::Result<()> {
    if !args.keep {
        let _ = std::fs::remove_dir_all(workdir);
    }
    let measured = result?;
    if !args.dry_run {
        append(&args.results, &measured.markdown)?;
    }
    println!("{}", measured.markdown);
    if measured.errors > 0 {
        bail!("the {what} saw {} errors", measured.errors);
    }
    Ok(())
}

fn say(line: &str) {
    eprintln!("bench: {line}");
}

fn backend_of(args: &Args) -> Backend {
    match &args.postgres {
        Some(server) => Backend::Postgres {
            server: server.clone(),
        },
        None => Backend::Sqlite,
    }
}

fn now_text() -> anyhow::Result<String> {
    Ok(time::OffsetDateTime::now_utc()
        .format(&time::format_description::parse_borrowed::<2>(
            "[year]-[month]-[day] [hour]:[minute] UTC",
        )?)
        .unwrap_or_default())
}

/// The small database, seeded, and a server on it.
struct Small {
    server: Server,
    /// The users whose sessions and logins the loads cycle through.
    users: Vec<u64>,
    tokens: Vec<String>,
    seeded: Duration,
    /// The database's URL (the SAML figure changes it behind the server's back).
    #[cfg_attr(not(feature = "saml"), allow(dead_code))]
    url: String,
}

async fn small_database(
    args: &Args,
    backend: &Backend,
    coreauth: &Path,
    workdir: &Path,
    hash: &str,
) -> anyhow::Result<Small> {
    let dir = workdir.join("small");
    std::fs::create_dir_all(&dir)?;
    let url = backend.create(&dir, "coreauth_bench_small").await?;
    seed::migrate(coreauth, &url, &dir)?;
    let seeded = seed::seed(&url, args.small_users, hash).await?;
    let server = Server::start(coreauth, &url, &dir, &args.server_env).await?;
    let users = seed::spread(args.small_users, args.sessions);
    let tokens = seed::session_tokens(&url, &users).await?;
    Ok(Small {
        server,
        users,
        tokens,
        seeded,
        url,
    })
}

fn login_bodies(users: &[u64]) -> Vec<String> {
    users
        .iter()
        .map(|&n| {
            serde_json::json!({
                "email": seed::email(n),
                "password": seed::PASSWORD,
                "selectedOrg": 0,
                "client": "bench",
            })
            .to_string()
        })
        .collect()
}

/// One API key per session token, made through `POST /authheader/add`.
async fn create_keys(addr: SocketAddr, tokens: &[String]) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let body = serde_json::json!({ "name": format!("bench {i}") }).to_string();
        let request = load::post_request(addr, "/authheader/add", Some(token), &body);
        let (status, answer) = load::call(addr, &request).await?;
        if status != 201 && status != 200 {
            bail!(
                "POST /authheader/add answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        let answer: serde_json::Value = serde_json::from_slice(&answer)?;
        let key = answer["token"]
            .as_str()
            .context("no token in the /authheader/add answer")?;
        keys.push(key.to_owned());
    }
    Ok(keys)
}

fn append(path: &Path, markdown: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let fresh = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if fresh {
        writeln!(
            file,
            "# coreauth benchmark results\n\nEach section is one run of `./scripts/bench`, \
             appended; see `bench/README.md` for how to read it.\n"
        )?;
    }
    file.write_all(markdown.as_bytes())?;
    Ok(())
}

fn server_env_note(settings: &[(String, String)]) -> String {
    if settings.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = settings.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
    format!(" except {}", listed.join(", "))
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

fn first_field(text: &str) -> String {
    text.split_whitespace().next().unwrap_or("?").to_owned()
}

fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // The results and charts this harness writes do not make the measured code uncommitted.
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":!bench/RESULTS.md",
        ":!bench/chart*.svg",
    ])
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} + uncommitted changes")
    } else {
        head
    }
}

fn machine(cores: usize) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1_048_576.0);
    format!(
        "{model}, {cores} cores, {mem_gib:.0} GiB RAM, Linux {}",
        kernel.trim()
    )
}
