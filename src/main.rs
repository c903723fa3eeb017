use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use libmimalloc_sys as mi;
use rangeserve::config::{unknown_env_vars, Cli, Command, LogFormat};
use rangeserve::ops::healthcheck;
use tracing_subscriber::EnvFilter;

/// The log subscriber: lines (text or JSON) filtered by `filter`. rustls warns once per
/// connection about what a client sent (wrk sends an IP address as the server name), which
/// would let any client flood the log: those warnings are counted in the metrics instead, and
/// shown only when the filter names rustls itself (`RUST_LOG=rustls=warn`).
fn logging(filter: EnvFilter, format: LogFormat) {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = if filter.to_string().contains("rustls") {
        filter
    } else {
        filter.add_directive("rustls=error".parse().expect("a valid directive"))
    };
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        // One object per line; the access line's fields (method, path, status, bytes, ...) are
        // keys of "fields".
        LogFormat::Json => lines
            .event_format(rangeserve::ops::access_log::JsonLines)
            .boxed(),
    };
    let rustls_warnings =
        filter_fn(|m| m.target().starts_with("rustls") && *m.level() == tracing::Level::WARN)
            .with_max_level_hint(tracing::Level::WARN);
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(CountRustlsWarnings.with_filter(rustls_warnings))
        .init();
}

/// Counts the events it is given (rustls's warnings) in the metrics.
struct CountRustlsWarnings;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountRustlsWarnings {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        rangeserve::ops::metrics::METRICS.tls_client_warning();
    }
}

/// mimalloc instead of glibc's malloc: a request makes a few dozen small allocations (the
/// header maps, the response, futures), which mimalloc serves faster, at the cost of some idle
/// memory (bench/README.md has the figures).
///
/// Called through `mi_malloc`, not the `mimalloc` crate's adapter: that one asks for every block
/// with `mi_malloc_aligned`, which takes mimalloc's slow generic path for any block over 1 KiB
/// (a header map, a read buffer).
#[global_allocator]
static ALLOC: Mimalloc = Mimalloc;

struct Mimalloc;

/// Transparent huge pages off for this process. mimalloc asks for them on its arenas
/// (`madvise(MADV_HUGEPAGE)`), and returns memory left unused to the system after a moment: a
/// block of read buffers freed and taken again then costs a fault that zeroes a whole 2 MiB
/// page, however little of it is used. Serving from a bucket, where the HTTP client's read
/// buffers come and go with every response of the store, that zeroing was 5-7% of the CPU
/// (perf, S9a); the heap is a few dozen MiB, too small for huge pages to save anything.
///
/// It runs as a constructor (`.init_array`), before the Rust runtime's first allocation: set in
/// `main`, it came after mimalloc's first arena pages had been faulted in as two huge pages,
/// 4 MiB of the idle server's 13.7 MiB RSS (`AnonHugePages` in `/proc/PID/smaps_rollup`).
extern "C" fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and touches no memory of ours.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

// The C runtime calls the functions in `.init_array` before `main` and before Rust's runtime
// set-up (which allocates). A function pointer placed there is all a constructor needs.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static NO_HUGE_PAGES: extern "C" fn() = no_huge_pages;

/// Every mimalloc block is aligned to at least a machine word; larger alignments are asked for.
const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: each function forwards to the mimalloc call with the same contract (a block of at
// least `size` bytes aligned to `align`, freed by `mi_free`); alignments above a word, which a
// plain `mi_malloc` does not promise for every size, use the aligned calls.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        mi::mi_free(ptr.cast())
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { url, timeout }) = &cli.command {
        let (url, probe) = match url {
            Some(url) => (url.clone(), healthcheck::Probe::Path),
            None => {
                let (listen, tls) = cli.listen_addr();
                (
                    healthcheck::default_url(listen, tls),
                    healthcheck::Probe::Server,
                )
            }
        };
        return match healthcheck::check(&url, probe, Duration::from_secs(*timeout)) {
            Ok(status) if status < 500 => {
                println!("healthy: {url} answered {status}");
                ExitCode::SUCCESS
            }
            Ok(status) => {
                eprintln!("unhealthy: {url} answered {status}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("unhealthy: {url}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Gen { size, seed }) = &cli.command {
        return gen(size, *seed);
    }
    let config = match cli.load() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("rangeserve: error: {e}");
            return ExitCode::from(2);
        }
    };
    // RUST_LOG wins over log_level, as tracing users expect; checked like log_level.
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) => match rangeserve::config::log_filter::check(&env) {
            Ok(()) => EnvFilter::new(env),
            Err(e) => {
                eprintln!("rangeserve: error: RUST_LOG: {e}");
                return ExitCode::from(2);
            }
        },
        Err(_) => EnvFilter::new(&config.log_level),
    };
    logging(filter, config.log_format);
    for var in unknown_env_vars() {
        tracing::warn!("{var} is set but is not a rangeserve setting; ignored");
    }

    // On one CPU (a container's quota or `taskset`), tokio's work-stealing scheduler has no one
    // to steal from and only adds its bookkeeping: the single-threaded scheduler runs the same
    // tasks on the same one thread. Blocking work (hashing, listings) still has its own pool.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let built = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match built {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rangeserve: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Every listener is bound before anything says "listening": a port in use is a start-up
        // error like any other bad setting.
        let listeners = match rangeserve::app::Listeners::bind(&config) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("rangeserve: error: {e}");
                return ExitCode::from(2);
            }
        };
        let addr = listeners.main.local_addr().map_or(config.listen, |a| a);
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        // What the accepted connections will use (`tcp_congestion`), as the kernel reports it.
        let tcp_congestion = rangeserve::transport::congestion::of(&listeners.main)
            .unwrap_or_else(|e| format!("unknown ({e})"));
        let scheduler = if one_cpu {
            "single-threaded (one CPU)"
        } else {
            "multi-threaded"
        };
        match &config.config_file {
            Some(f) => tracing::info!("configuration: {}", f.display()),
            None => tracing::info!(
                "configuration: no file (defaults, RANGESERVE_* variables and flags)"
            ),
        }
        let shutdown = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("rangeserve: error: cannot install the SIGTERM/SIGINT handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let served = match config.bucket().map(str::to_owned) {
            Some(url) => {
                // Reached before "listening": an unreachable endpoint, a missing bucket or
                // refused credentials are start-up errors like any other bad setting.
                let files = rangeserve::app::bucket_files(&config, &url);
                if let Err(e) = files.start().await {
                    eprintln!("rangeserve: error: root {e}");
                    return ExitCode::from(2);
                }
                tracing::info!(root = %url, scheduler, tcp_congestion, "listening on {scheme}://{addr}/");
                rangeserve::app::serve(listeners, config, files, shutdown).await
            }
            None => {
                tracing::info!(root = %config.root.display(), scheduler, tcp_congestion, "listening on {scheme}://{addr}/");
                let files = rangeserve::app::files(&config);
                rangeserve::app::serve(listeners, config, files, shutdown).await
            }
        };
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rangeserve: error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `rangeserve gen SIZE [--seed N]`: the lab's generated file on standard output.
fn gen(size: &str, seed: u64) -> ExitCode {
    use rangeserve::app::lab::gen;
    let size = match gen::parse_size(size) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rangeserve: error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    match gen::write_to(size, seed, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader had enough (`| head -c N`).
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rangeserve: error: writing to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM. The handlers are installed here, when called, not when the future is
/// first polled: it is called before "listening" is logged, so a SIGTERM sent as soon as that
/// line appears stops the server gracefully instead of killing it.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
