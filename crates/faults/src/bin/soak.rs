//! `cargo xtask soak --minutes N` (or `--seconds N`): every send pattern at
//! once under the seeded fault mix, round after round; fails (non-zero exit,
//! a panic naming the check) on any loss under at-least-once, inexact
//! publish drops, fds or tasks not back to baseline, or memory that grows.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use clap::Parser;
use smartsock_faults::soak::{open_fds, round, rss_kib};

/// The soak's options.
#[derive(Debug, Parser)]
#[command(about = "every smartsock send pattern at once under seeded network faults")]
struct Args {
    /// How long to soak, in minutes.
    #[arg(long, conflicts_with = "seconds")]
    minutes: Option<u64>,
    /// How long to soak, in seconds (for a short run in CI).
    #[arg(long)]
    seconds: Option<u64>,
    /// Length of one round: each round makes fresh sockets.
    #[arg(long, default_value_t = 20)]
    round_seconds: u64,
    /// Seed of the fault schedule (each round derives its own from it).
    #[arg(long, default_value_t = 0x005e_ed15)]
    seed: u64,
}

/// Resident memory may grow this much past its level after the warm-up (the
/// first quarter of the rounds) before it counts as a leak: the allocator's
/// caches and fragmentation keep creeping up slowly (measured: about 9 MiB
/// over the first 12 rounds, most of it in the first 4), while a leak of
/// even a few bytes per message grows by megabytes every round.
const RSS_SLACK_KIB: u64 = 8 * 1024;

fn main() {
    let args = Args::parse();
    let total = Duration::from_secs(args.seconds.unwrap_or_else(|| args.minutes.unwrap_or(1) * 60));
    let round_length =
        Duration::from_secs(args.round_seconds.max(10)).min(total.max(Duration::from_secs(10)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let fds_before = open_fds();
    let tasks_before = runtime.metrics().num_alive_tasks();
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut rounds = 0u64;
    let mut totals = [0u64; 4];
    while rounds == 0 || started.elapsed() + round_length <= total {
        let seed = args.seed.wrapping_add(rounds.wrapping_mul(0x9E37_79B9));
        let figures = runtime.block_on(round(seed, round_length));
        for f in &figures {
            println!("{f}");
            totals[0] += f.messages;
            totals[1] += f.faults;
            totals[2] += f.duplicates;
        }
        totals[3] += figures.iter().filter(|f| f.scenario != "soak_publish").map(|f| f.lost).sum::<u64>();
        rounds += 1;
        rss.push(rss_kib());
        println!(
            "soak: round {rounds} done at {:.0}s, seed {seed}, rss {} KiB, fds {}, tasks {}",
            started.elapsed().as_secs_f64(),
            rss.last().copied().unwrap_or(0),
            open_fds(),
            runtime.metrics().num_alive_tasks()
        );
    }
    // Closed sockets end their tasks and close their fds soon after, not
    // necessarily at once: wait for them, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (open_fds() > fds_before || runtime.metrics().num_alive_tasks() > tasks_before)
        && Instant::now() < deadline
    {
        // Asleep on the runtime (the timer is made inside it), so that its
        // own tasks can finish meanwhile.
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    }
    let (fds_after, tasks_after) = (open_fds(), runtime.metrics().num_alive_tasks());
    let first = rss.first().copied().unwrap_or(0);
    let warm = rss.get(rss.len().div_ceil(4).saturating_sub(1)).copied().unwrap_or(0);
    let last = rss.last().copied().unwrap_or(0);
    let allowed = warm + RSS_SLACK_KIB.max(warm / 10);
    println!(
        "FIGURES soak: time={:.0}s rounds={rounds} messages={} faults={} lost_at_least_once={} duplicates={} \
         rss_first={first}KiB rss_after_warmup={warm}KiB rss_last={last}KiB rss_max={}KiB fds {fds_before}->{fds_after} tasks {tasks_before}->{tasks_after}",
        started.elapsed().as_secs_f64(),
        totals[0],
        totals[1],
        totals[3],
        totals[2],
        rss.iter().max().copied().unwrap_or(0),
    );
    assert_eq!(totals[3], 0, "at-least-once lost messages");
    assert!(fds_after <= fds_before, "fds not back to baseline: {fds_before} -> {fds_after}");
    assert!(tasks_after <= tasks_before, "tasks not back to baseline: {tasks_before} -> {tasks_after}");
    assert!(
        last <= allowed,
        "resident memory grew: {warm} KiB after the warm-up -> {last} KiB after {rounds} rounds (allowed {allowed})"
    );
    println!("soak: passed");
}
