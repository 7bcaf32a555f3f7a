//! `sim`: compare pricing policies in process, or drive the live stack.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sim::experiments::{self, Design};
use sim::live::{self, LiveConfig};
use sim::{compare, frontier, report, PolicyKind, Scenario};

/// Equilibrium market simulator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the concert scenario under every policy, in process, and write
    /// the comparison table (Markdown) and chart (SVG).
    Compare {
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Scenario length in minutes (default: 3 hours).
        #[arg(long, default_value_t = 180.0)]
        minutes: f64,
        /// Where to write the table and chart.
        #[arg(long, default_value = "docs/simulation")]
        out: PathBuf,
    },
    /// Sweep every policy family's settings over several seeds of the
    /// concert evening and mark the frontier (trips, concert wait,
    /// volatility).
    Frontier {
        /// Seeds 1..=N.
        #[arg(long, default_value_t = 8)]
        seeds: u64,
        /// Where to write the table and chart.
        #[arg(long, default_value = "docs/simulation")]
        out: PathBuf,
    },
    /// Run the default curve against forecast-aware three ways on the
    /// concert evening (each alone, a user split, switchbacks) and compare
    /// each experiment's estimate with the truth.
    Experiments {
        /// Seeds 1..=N.
        #[arg(long, default_value_t = 8)]
        seeds: u64,
        /// Switchback windows to try, minutes.
        #[arg(long, value_delimiter = ',', default_value = "10,30")]
        windows: Vec<u32>,
        /// Where to write the page and chart.
        #[arg(long, default_value = "docs/simulation")]
        out: PathBuf,
    },
    /// Play a multi-day city (two rush hours a day, a rainy evening, the
    /// concert on the last night): backtest the forecasts on the held-out
    /// last days and compare the policies there.
    City {
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Days of riders for the forecast backtest (day 0 a Thursday).
        #[arg(long, default_value_t = 21)]
        days: u32,
        /// The last days held out for scoring.
        #[arg(long, default_value_t = 7)]
        holdout: u32,
        /// Days the policies play (the full simulation; the last two have
        /// the rain and the concert; 0: the forecasts only).
        #[arg(long, default_value_t = 4)]
        policy_days: u32,
        /// Where to write the tables.
        #[arg(long, default_value = "docs/simulation")]
        out: PathBuf,
    },
    /// Play an identity provider for a local stack or a bench: make keys,
    /// write the edge's `identity` value (`identity.json`), the HS256
    /// secret (`secret`) and a token of each algorithm for one rider
    /// (`token-es256`, `token-rs256`, `token-hs256`, valid for a day) into
    /// a directory. Never for production riders.
    Identity {
        /// Where to write the files.
        #[arg(long)]
        out: PathBuf,
        /// The riders' `sub`.
        #[arg(long, default_value = "bench-rider")]
        rider: String,
    },
    /// Drive the real origin and edge with the concert evening.
    Live {
        /// Origin base URL.
        #[arg(long, default_value = "http://127.0.0.1:8790")]
        origin: String,
        /// Edge base URL.
        #[arg(long, default_value = "http://127.0.0.1:8787")]
        edge: String,
        /// Region.
        #[arg(long, default_value = "sf")]
        region: String,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Scenario length, simulated minutes.
        #[arg(long, default_value_t = 60.0)]
        minutes: f64,
        /// `evening` (the concert evening's fleet and riders over
        /// `--minutes`) or `short` (a quarter of the fleet, for quick runs).
        #[arg(long, default_value = "evening")]
        scenario: String,
        /// Set the origin's clock to simulated time (an origin started with
        /// EQ_SIMULATED_CLOCK=true), so it prices in the simulator's time
        /// frame.
        #[arg(long)]
        drive_origin_clock: bool,
        /// The origin's reader token: with --drive-origin-clock, report
        /// where the origin's grids surged.
        #[arg(long, env = "EQ_READER_TOKEN", hide_env_values = true)]
        reader_token: Option<String>,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 10.0)]
        speedup: f64,
        /// Stop after this many real seconds (0: run the whole scenario).
        #[arg(long, default_value_t = 0.0)]
        max_seconds: f64,
        /// The origin's producer token (ingest and outcomes).
        #[arg(long, env = "EQ_PRODUCER_TOKEN", hide_env_values = true)]
        origin_token: String,
        /// The edge's dispatch token (drives bookings: start, complete,
        /// cancel, fail).
        #[arg(long, env = "EQ_DISPATCH_TOKEN", hide_env_values = true)]
        dispatch_token: String,
        /// A PEM file of extra CA certificates to trust for `https://`
        /// origins and edges (a private deployment, a test proxy).
        #[arg(long, env = "EQ_EDGE_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// The region registry the edge prices with (the `regions` value;
        /// the shipped one by default): the scenario must play inside
        /// `--region` there, in its cells, or every quote would be refused.
        #[arg(long, env = "EQ_REGISTRY", default_value = "config/regions.json")]
        registry: PathBuf,
    },
}

/// The city's forecast backtest and policy comparison, as Markdown.
fn city_report(seed: u64, days: u32, holdout: u32, policy_days: u32) -> String {
    let scenario = Scenario::city(seed, days);
    let holdout_bucket = u64::from(days - holdout) * shared::forecast::BUCKETS_PER_DAY;
    let mut md = format!(
        "Made by `cargo run --release -p equilibrium-sim -- city --seed {seed} --days {days} \
         --holdout {holdout} --policy-days {policy_days}`.\n\n\
         ## Forecast accuracy: {days} days, the last {holdout} held out\n\n"
    );
    let bucket_s = shared::forecast::BUCKET.0 as f64 / 1_000.0;
    let events: Vec<(u64, u64)> = scenario
        .events_s()
        .iter()
        .map(|(a, b)| ((a / bucket_s) as u64, (b / bucket_s).ceil() as u64))
        .collect();
    for scale in [1.0, 5.0, 20.0] {
        let log = sim::backtest::replay(&scenario, scale, |f| {
            eprint!("\rbacktest, demand x{scale}: {:>5.1} %", f * 100.0);
            let _ = std::io::stderr().flush();
        });
        eprintln!();
        let what = if scale == 1.0 {
            "the city the simulator's fleet serves".to_string()
        } else {
            format!("riders only, a city {scale} times as busy")
        };
        use sim::backtest::{evaluate, table, Days};
        md.push_str(&format!(
            "### Demand x{scale} ({what})\n\nThe held-out days whole:\n\n{}\nThe same days without the rain and the concert (each with the hour after it):\n\n{}\nTheir weekend only:\n\n{}\n",
            table(&evaluate(&log, holdout_bucket, &[], Days::All)),
            table(&evaluate(&log, holdout_bucket, &events, Days::All)),
            table(&evaluate(&log, holdout_bucket, &events, Days::Weekends)),
        ));
    }
    if policy_days == 0 {
        return md;
    }
    let scenario = Scenario::city(seed, policy_days);
    let from_s = f64::from(policy_days.saturating_sub(2)) * 86_400.0;
    let outcomes: Vec<sim::Outcome> = sim::PolicyKind::ALL
        .iter()
        .map(|kind| {
            let o = sim::Simulation::new(scenario.clone(), *kind).run(|f| {
                eprint!("\r{:<18} {:>5.1} %", kind.name(), f * 100.0);
                let _ = std::io::stderr().flush();
            });
            eprintln!();
            o
        })
        .collect();
    md.push_str(&format!(
        "## The policies: {policy_days} days, the last two (the rain, the concert)\n\n{}",
        report::city_table(&outcomes, &scenario, from_s)
    ));
    md
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Identity { out, rider } => {
            use sim::identity::{now_secs, Alg, Provider, AUDIENCE, ISSUER};
            let p = Provider::new()?;
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("identity.json"), p.identity_json())?;
            std::fs::write(out.join("secret"), p.secret())?;
            let now = now_secs();
            let claims = serde_json::json!({"sub": rider, "iss": ISSUER, "aud": AUDIENCE,
                                            "iat": now, "exp": now + 86_400});
            for (name, alg) in [
                ("es256", Alg::Es256),
                ("rs256", Alg::Rs256),
                ("hs256", Alg::Hs256),
            ] {
                std::fs::write(out.join(format!("token-{name}")), p.sign(alg, &claims))?;
            }
            println!(
                "wrote identity.json, secret and token-{{es256,rs256,hs256}} to {}",
                out.display()
            );
            Ok(())
        }
        Command::Compare { seed, minutes, out } => {
            let mut scenario = Scenario::concert(seed);
            scenario.duration_s = minutes * 60.0;
            let outcomes = compare(&scenario, |p, f| {
                eprint!("\r{:<18} {:>5.1} %", p.name(), f * 100.0);
                if f >= 1.0 {
                    eprintln!();
                }
                let _ = std::io::stderr().flush();
            });
            std::fs::create_dir_all(&out)?;
            let spike = scenario
                .spikes
                .first()
                .map(|s| (s.start_s, s.start_s + s.duration_s));
            let mut table = report::table(&outcomes);
            if let Some((a, b)) = spike {
                table.push('\n');
                table.push_str(&report::spike_table(&outcomes, a, b));
            }
            std::fs::write(out.join("policies.md"), &table)?;
            std::fs::write(out.join("policies.svg"), report::svg(&outcomes, spike))?;
            println!("{table}");
            println!(
                "wrote {} and {}",
                out.join("policies.md").display(),
                out.join("policies.svg").display()
            );
            Ok(())
        }
        Command::City {
            seed,
            days,
            holdout,
            policy_days,
            out,
        } => {
            let days = days.max(2);
            let holdout = holdout.clamp(1, days - 1);
            let policy_days = if policy_days == 0 {
                0
            } else {
                policy_days.max(2)
            };
            let report = city_report(seed, days, holdout, policy_days);
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("city.md"), &report)?;
            println!("{report}");
            println!("wrote {}", out.join("city.md").display());
            Ok(())
        }
        Command::Experiments {
            seeds,
            windows,
            out,
        } => {
            let control = PolicyKind::Default.spec().0;
            let treatment = PolicyKind::Forecast.spec().0;
            let mut designs = vec![Design::User];
            designs.extend(
                windows
                    .iter()
                    .map(|m| Design::Switchback { window_minutes: *m }),
            );
            let mut runs = Vec::new();
            for seed in 1..=seeds.max(1) {
                let scenario = Scenario::concert(seed);
                let run =
                    experiments::run_seed(&scenario, &designs, control, treatment, |what, f| {
                        eprint!("\rseed {seed}/{seeds}: {what:<20} {:>5.1} %", f * 100.0);
                        let _ = std::io::stderr().flush();
                    })?;
                eprintln!();
                runs.push(run);
            }
            let windows: Vec<String> = windows.iter().map(u32::to_string).collect();
            let command = format!(
                "cargo run -p equilibrium-sim -- experiments --seeds {seeds} --windows {}",
                windows.join(",")
            );
            let page = experiments::report(&runs, &Scenario::concert(1), &command);
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("experiments.md"), &page)?;
            std::fs::write(out.join("experiments.svg"), experiments::svg(&runs))?;
            println!("{page}");
            println!(
                "wrote {} and {}",
                out.join("experiments.md").display(),
                out.join("experiments.svg").display()
            );
            Ok(())
        }
        Command::Frontier { seeds, out } => {
            let seeds: Vec<u64> = (1..=seeds.max(1)).collect();
            let candidates = frontier::candidates();
            let points = frontier::sweep(&candidates, &seeds, |done, total| {
                eprint!("\r{done}/{total} runs");
                let _ = std::io::stderr().flush();
            });
            eprintln!();
            let table = frontier::table(&points);
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("frontier.md"), &table)?;
            std::fs::write(out.join("frontier.svg"), frontier::svg(&points))?;
            println!("{table}");
            println!(
                "wrote {} and {}",
                out.join("frontier.md").display(),
                out.join("frontier.svg").display()
            );
            Ok(())
        }
        Command::Live {
            origin,
            edge,
            region,
            seed,
            minutes,
            scenario,
            drive_origin_clock,
            reader_token,
            speedup,
            max_seconds,
            origin_token,
            dispatch_token,
            ca_file,
            registry,
        } => {
            let scenario = match scenario.as_str() {
                "evening" => Scenario::evening(seed, minutes),
                "short" => Scenario::short(seed, minutes),
                other => anyhow::bail!("unknown scenario {other:?}: use evening or short"),
            };
            let text = std::fs::read_to_string(&registry)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", registry.display()))?;
            let parsed = shared::api::admin::parse_registry(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", registry.display()))?;
            live::check_region(&scenario, &parsed, &region).map_err(anyhow::Error::msg)?;
            let cfg = LiveConfig {
                origin,
                edge,
                region,
                speedup,
                max_seconds,
                origin_token,
                dispatch_token,
                drive_clock: drive_origin_clock,
                reader_token,
                ca_file,
            };
            let rep = live::run(scenario, &cfg, |r| {
                eprint!("\r{}", r.summary());
                let _ = std::io::stderr().flush();
            })?;
            eprintln!();
            println!("{}", rep.summary());
            if let Some(o) = &rep.outcome {
                println!("\n{}", report::table(std::slice::from_ref(o)));
            }
            if let Some(s) = &rep.surge {
                println!(
                    "\nthe origin's grids: {:.0} % of cell-minutes at 1.5x or more before the concert, {:.0} % during it ({:.0} % of those within 2 km of the venue)",
                    100.0 * s.before_spike,
                    100.0 * s.during_spike,
                    100.0 * s.near_venue
                );
            }
            Ok(())
        }
    }
}
