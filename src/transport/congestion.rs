//! `tcp_congestion`: the TCP congestion control of the connections a listener accepts.
//!
//! BBR, a common system default (`net.ipv4.tcp_congestion_control`), paces every connection's
//! sending with a timer of its own when no `fq` qdisc does it. Over loopback there is no path
//! to pace, and the timer costs the sender: one 2 GiB download over loopback, server on one
//! core, took the server 0.72-0.93 s of CPU at 2.3-3.0 GB/s with the system's bbr, and 0.18 s
//! at 4.1 GB/s from a listener set to cubic (bench/README.md, "TCP congestion control").
//! So by default (`auto`) a listener bound to a loopback address, whose peers are local (a
//! reverse proxy or sidecar in front, a test set-up), uses cubic; every other listener keeps
//! the system's choice, which is the administrator's for real networks. systemd's
//! `TCPCongestion=` for socket units is the same knob.
//!
//! It is set on the listening socket, before `listen`, so that each accepted connection starts
//! with it (Linux copies the listener's choice to its children). Switching an accepted
//! connection instead would come too late: BBR turns pacing on when the connection is set up,
//! and it stays on under the next algorithm.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;

/// What `auto` uses on loopback listeners: Linux's own default algorithm (built in unless a
/// kernel is configured otherwise, and always allowed to unprivileged processes when it was
/// the boot default), which does not pace.
pub const LOOPBACK: &str = "cubic";

/// The longest algorithm name Linux takes (`TCP_CA_NAME_MAX` is 16, with the NUL).
const NAME_MAX: usize = 15;

/// The `tcp_congestion` setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TcpCongestion {
    /// [`LOOPBACK`] on listeners bound to a loopback address, the system's default elsewhere.
    #[default]
    Auto,
    /// The system's default on every listener.
    System,
    /// This algorithm on every listener; one the kernel lacks or refuses is a start-up error.
    Named(String),
}

impl TcpCongestion {
    /// `auto`, `system`, or an algorithm's name (`cubic`, `bbr`, `reno`, ...).
    pub fn parse(value: &str) -> Result<TcpCongestion, String> {
        let v = value.trim();
        match v {
            "auto" => Ok(TcpCongestion::Auto),
            "system" => Ok(TcpCongestion::System),
            name if !name.is_empty()
                && name.len() <= NAME_MAX
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                Ok(TcpCongestion::Named(name.to_string()))
            }
            _ => Err(format!(
                "{value:?} is not auto, system or an algorithm name (letters, digits, - and _, \
                 at most {NAME_MAX})"
            )),
        }
    }

    /// Set what this setting asks for on `socket`, a listener for `addr`, before it listens.
    /// With `auto`, an algorithm the kernel refuses leaves the system's (logged at debug).
    pub fn apply(&self, socket: &impl AsFd, addr: SocketAddr) -> io::Result<()> {
        let name = match self {
            TcpCongestion::System => return Ok(()),
            TcpCongestion::Auto if !addr.ip().is_loopback() => return Ok(()),
            TcpCongestion::Auto => LOOPBACK,
            TcpCongestion::Named(name) => name,
        };
        match socket2::SockRef::from(socket).set_tcp_congestion(name.as_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if *self == TcpCongestion::Auto => {
                tracing::debug!(
                    "tcp_congestion auto: {LOOPBACK} on {addr}: {e}; keeping the system's"
                );
                Ok(())
            }
            Err(e) => Err(io::Error::new(e.kind(), refused(name, &e))),
        }
    }
}

impl fmt::Display for TcpCongestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpCongestion::Auto => f.write_str("auto"),
            TcpCongestion::System => f.write_str("system"),
            TcpCongestion::Named(name) => f.write_str(name),
        }
    }
}

/// The algorithm `socket` uses.
pub fn of(socket: &impl AsFd) -> io::Result<String> {
    let raw = socket2::SockRef::from(socket).tcp_congestion()?;
    // The kernel fills the buffer with the name and NULs.
    let name = raw.split(|&b| b == 0).next().unwrap_or_default();
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// The kernel's `net.ipv4.tcp_{what}congestion_control`: `""` for its default, `"available_"`
/// or `"allowed_"` for those lists.
fn sysctl(what: &str) -> io::Result<String> {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/tcp_{what}congestion_control"))
        .map(|s| s.trim().to_string())
}

/// Why the kernel refused `name`, with the lists that say what it would take.
fn refused(name: &str, e: &io::Error) -> String {
    let list = |what| sysctl(what).unwrap_or_else(|_| "unknown".into());
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "tcp_congestion {name:?}: not in this kernel (available: {})",
            list("available_")
        ),
        Some(libc::EPERM) => format!(
            "tcp_congestion {name:?}: not allowed for this process (allowed: {}; others need \
             CAP_NET_ADMIN)",
            list("allowed_")
        ),
        _ => format!("tcp_congestion {name:?}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpStream};

    /// The system's default, as the kernel reports it (not through `apply` or `of`).
    fn system_default() -> String {
        sysctl("").unwrap()
    }

    /// Whether the kernel lets this process set `name`: it is in the allowed list, or the
    /// process has CAP_NET_ADMIN (root, in CI) and the kernel has it (`available_`; e.g. allowed
    /// "reno bbr", available "reno bbr cubic"). Asked of the kernel on a socket of its own, not
    /// through `apply`.
    fn settable(name: &str) -> bool {
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .unwrap()
            .set_tcp_congestion(name.as_bytes())
            .is_ok()
    }

    /// A listener made the way `app::listen` makes one, with `cc`, on `ip`; then the
    /// algorithm of a connection it accepted, read with a plain `getsockopt`.
    fn accepted_with(cc: &TcpCongestion, ip: Ipv4Addr) -> io::Result<String> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        let addr = SocketAddr::from((ip, 0));
        cc.apply(&socket, addr)?;
        socket.bind(&addr.into())?;
        socket.listen(8)?;
        let listener = std::net::TcpListener::from(socket);
        let _client = TcpStream::connect(listener.local_addr()?)?;
        let (conn, _) = listener.accept()?;
        let mut name = [0u8; 16];
        let mut len = name.len() as libc::socklen_t;
        // SAFETY: `name` is as long as `len` says.
        let r = unsafe {
            libc::getsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&conn),
                libc::IPPROTO_TCP,
                libc::TCP_CONGESTION,
                name.as_mut_ptr().cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        let end = name.iter().position(|&b| b == 0).unwrap_or(len as usize);
        assert_eq!(of(&conn)?, String::from_utf8_lossy(&name[..end]));
        Ok(String::from_utf8_lossy(&name[..end]).into_owned())
    }

    #[test]
    fn settings_parse() {
        assert_eq!(TcpCongestion::parse("auto"), Ok(TcpCongestion::Auto));
        assert_eq!(TcpCongestion::parse(" system "), Ok(TcpCongestion::System));
        assert_eq!(
            TcpCongestion::parse("bbr"),
            Ok(TcpCongestion::Named("bbr".into()))
        );
        for bad in ["", "  ", "cu bic", "../x", "a_name_too_long_x", "cubic\0"] {
            assert!(TcpCongestion::parse(bad).is_err(), "{bad:?} was taken");
        }
        assert_eq!(TcpCongestion::Named("reno".into()).to_string(), "reno");
        assert_eq!(TcpCongestion::default(), TcpCongestion::Auto);
    }

    #[test]
    fn auto_uses_cubic_on_loopback_when_the_kernel_allows_it() {
        let got = accepted_with(&TcpCongestion::Auto, Ipv4Addr::LOCALHOST).unwrap();
        let want = if settable(LOOPBACK) {
            LOOPBACK.to_string()
        } else {
            system_default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn system_and_other_addresses_keep_the_system_default() {
        let got = accepted_with(&TcpCongestion::System, Ipv4Addr::LOCALHOST).unwrap();
        assert_eq!(got, system_default());
        // Not a loopback listener: auto leaves it (bound to all addresses, reached on loopback).
        let got = accepted_with(&TcpCongestion::Auto, Ipv4Addr::UNSPECIFIED).unwrap();
        assert_eq!(got, system_default());
    }

    #[test]
    fn a_named_algorithm_is_used_on_any_listener() {
        // reno is always built in and always allowed.
        let reno = TcpCongestion::Named("reno".into());
        assert_eq!(accepted_with(&reno, Ipv4Addr::UNSPECIFIED).unwrap(), "reno");
        assert_eq!(accepted_with(&reno, Ipv4Addr::LOCALHOST).unwrap(), "reno");
    }

    #[test]
    fn an_unknown_algorithm_is_an_error_that_lists_the_available_ones() {
        let e = accepted_with(
            &TcpCongestion::Named("nosuchcc".into()),
            Ipv4Addr::LOCALHOST,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("tcp_congestion \"nosuchcc\": not in this kernel (available: "),
            "{e}"
        );
        assert!(e.contains("reno"), "{e}");
    }
}
