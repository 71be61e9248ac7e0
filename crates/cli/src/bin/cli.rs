//! The command line: every subcommand and flag, parsed and checked by clap.

use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use smartsock::PeerId;

const MAIN_EXAMPLES: &str = "\
Examples:
  # one terminal: print what arrives
  smartsock recv --bind 127.0.0.1:5555
  # another: send two messages, then exit once they are delivered
  smartsock send --connect 127.0.0.1:5555 hello world

  # send each line of a file, to every subscriber
  smartsock send --bind 127.0.0.1:5556 --mode publish --wait-peers 2 < lines.txt

Run `smartsock <COMMAND> --help` for each command's flags.";

const RECV_EXAMPLES: &str = "\
Examples:
  smartsock recv --bind 127.0.0.1:5555
  smartsock recv --connect 127.0.0.1:5555 --connect 127.0.0.1:5556 --count 10
  smartsock recv --bind 127.0.0.1:0 --json     # the port chosen is told on stderr
  smartsock recv --bind [::1]:5555 --hex
  smartsock recv --bind 127.0.0.1:5555 --stats > /dev/null   # rates once a second on stderr";

const SEND_EXAMPLES: &str = "\
Examples:
  smartsock send --connect 127.0.0.1:5555 hello world
  printf 'one\\ntwo\\n' | smartsock send --connect 127.0.0.1:5555
  smartsock send --bind 127.0.0.1:5555 --mode publish --wait-peers 3 tick
  smartsock send --connect 127.0.0.1:5555 --at-least-once important
  smartsock send --connect 127.0.0.1:5555 --count 100000 tick   # a progress bar on a terminal
  smartsock send --bind 127.0.0.1:5555 --to 00112233445566778899aabbccddeeff 'just for you'";

const AGENT_EXAMPLES: &str = "\
Every flag takes a value; booleans are the words true and false.

Examples:
  smartsock agent --role bind --port 25000 --behavior sink --count 10
  smartsock agent --role connect --port 25000 --behavior source --count 10 --prefix m --linger 2.0
  smartsock agent --role bind --port 25000 --behavior echo --count 5 --delivery at-least-once";

/// Send and receive messages with smart sockets that speak the aiomsg protocol.
#[derive(Debug, Parser)]
#[command(name = "smartsock", version, after_help = MAIN_EXAMPLES, propagate_version = true)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print each message received, one per line.
    #[command(after_help = RECV_EXAMPLES)]
    Recv(RecvArgs),
    /// Send the given messages, or each line of standard input, then exit once delivered.
    #[command(after_help = SEND_EXAMPLES)]
    Send(SendArgs),
    /// The aiomsg conformance agent: a source, sink or echo for interop tests.
    #[command(after_help = AGENT_EXAMPLES)]
    Agent(AgentArgs),
}

/// Where a socket listens and what it dials: at least one address.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub(crate) struct Endpoints {
    /// Listen on ADDR and accept peers: host:port or tcp://host:port (port 0 picks a free
    /// port; WebSocket peers are accepted on the same port), tls://host:port (needs
    /// --tls-cert and --tls-key), unix:///path, unix://@name (Linux), inproc://name. Repeatable.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub(crate) bind: Vec<String>,
    /// Connect to ADDR (any form --bind takes, or ws://host:port/path, wss://host:port/path),
    /// reconnecting whenever the link drops; tls:// and wss:// need --tls-ca. Repeatable.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub(crate) connect: Vec<String>,
}

/// TLS for `send` and `recv`: PEM files.
#[derive(Debug, Args, Default)]
pub(crate) struct TlsArgs {
    /// Certificate chain (PEM) this socket presents: as the server of a tls:// bind, and
    /// as the client of a tls:// or wss:// connect when the server asks for one.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub(crate) tls_cert: Option<String>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub(crate) tls_key: Option<String>,
    /// CA certificates (PEM) trusted to have issued the servers' certificates (connect).
    #[arg(long, value_name = "PATH")]
    pub(crate) tls_ca: Option<String>,
    /// Require client certificates issued by these CAs (PEM) on tls:// binds: mutual TLS.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub(crate) tls_client_ca: Option<String>,
    /// The name the server's certificate must carry, if not the host connected to.
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_server_name: Option<String>,
}

impl TlsArgs {
    pub(crate) fn files(&self) -> crate::tls::TlsFiles<'_> {
        crate::tls::TlsFiles {
            cert: self.tls_cert.as_deref().unwrap_or(""),
            key: self.tls_key.as_deref().unwrap_or(""),
            ca: self.tls_ca.as_deref().unwrap_or(""),
            client_ca: self.tls_client_ca.as_deref().unwrap_or(""),
            server_name: self.tls_server_name.as_deref().unwrap_or(""),
        }
    }
}

/// `smartsock recv`.
#[derive(Debug, Args)]
pub(crate) struct RecvArgs {
    #[command(flatten)]
    pub(crate) endpoints: Endpoints,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// Exit after N messages (default: run until interrupted).
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Print each payload as lowercase hex.
    #[arg(long, conflicts_with = "json")]
    pub(crate) hex: bool,
    // Not a doc comment: rustdoc would read the placeholders as HTML tags.
    #[arg(long, help = r#"Print JSON lines: {"from":"<sender identity>","payload":"<text>"}"#)]
    pub(crate) json: bool,
    /// This socket's identity, 32 hex digits (default: random).
    #[arg(long, value_name = "HEX32", value_parser = parse_peer)]
    pub(crate) identity: Option<PeerId>,
    /// Report peers connecting and disconnecting on stderr.
    #[arg(long, short)]
    pub(crate) verbose: bool,
    /// Print receive rates on stderr once a second (messages/s, MB/s, peers), and a summary at the end.
    #[arg(long)]
    pub(crate) stats: bool,
}

/// Round-robin or publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Every message to every connected peer.
    Publish,
    /// Each message to one peer, cycling.
    #[value(alias = "round-robin")]
    Roundrobin,
}

impl From<Mode> for smartsock::SendMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Publish => Self::Publish,
            Mode::Roundrobin => Self::RoundRobin,
        }
    }
}

/// `smartsock send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    pub(crate) endpoints: Endpoints,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// How messages are spread over peers.
    #[arg(long, value_enum, default_value_t = Mode::Roundrobin)]
    pub(crate) mode: Mode,
    /// Send as DATA_REQ and resend until acknowledged (not with publish).
    #[arg(long)]
    pub(crate) at_least_once: bool,
    /// Send only to the peer with this identity (32 hex digits), waiting for it to connect.
    #[arg(long, value_name = "PEER", value_parser = parse_peer)]
    pub(crate) to: Option<PeerId>,
    /// Wait until N peers are connected before sending.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) wait_peers: usize,
    /// This socket's identity, 32 hex digits (default: random).
    #[arg(long, value_name = "HEX32", value_parser = parse_peer)]
    pub(crate) identity: Option<PeerId>,
    /// Seconds allowed at the end to deliver what is queued (and again for acks).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub(crate) linger: Duration,
    /// Give up, exiting 1, if a message cannot be queued within SECS (no peer
    /// connected, or every peer stopped reading). Default: wait as long as it takes.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub(crate) send_timeout: Option<Duration>,
    /// Report peers connecting and disconnecting on stderr.
    #[arg(long, short)]
    pub(crate) verbose: bool,
    /// Send the MESSAGEs N times over (a load generator: --count 100000 hello).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "messages",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: u64,
    /// The messages; with none, each line of standard input is one message.
    #[arg(value_name = "MESSAGE")]
    pub(crate) messages: Vec<String>,
}

/// `bind` or `connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// Listen on host:port.
    Bind,
    /// Dial host:port.
    Connect,
}

/// What the agent does with messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Behavior {
    /// Send prefix+i for i in 0..count, stay --linger seconds, exit.
    Source,
    /// Print each payload received on its own line; exit after --count.
    Sink,
    /// Send every payload back to its sender.
    Echo,
}

/// The delivery guarantee, as the conformance flags spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeliveryFlag {
    /// DATA, no acknowledgement.
    AtMostOnce,
    /// DATA_REQ, acknowledged, resent until then.
    AtLeastOnce,
}

impl From<DeliveryFlag> for smartsock::Delivery {
    fn from(flag: DeliveryFlag) -> Self {
        match flag {
            DeliveryFlag::AtMostOnce => Self::AtMostOnce,
            DeliveryFlag::AtLeastOnce => Self::AtLeastOnce,
        }
    }
}

/// `smartsock agent`: the aiomsg conformance-agent contract. Every flag takes a value.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Bind (listen) or connect (dial).
    #[arg(long, value_enum, default_value_t = Role::Connect)]
    pub(crate) role: Role,
    /// The host to bind or connect to.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// The port to bind or connect to.
    #[arg(long, default_value_t = 25000)]
    pub(crate) port: u16,
    /// How a source spreads its messages.
    #[arg(long, value_enum, default_value_t = Mode::Roundrobin)]
    pub(crate) send_mode: Mode,
    /// Source, sink or echo.
    #[arg(long, value_enum, default_value_t = Behavior::Sink)]
    pub(crate) behavior: Behavior,
    /// Messages to send (source), to receive before exiting (sink) or to echo (echo; 0 = forever).
    #[arg(long, default_value_t = 10)]
    pub(crate) count: u64,
    /// What a source's messages start with.
    #[arg(long, default_value = "m")]
    pub(crate) prefix: String,
    /// The delivery guarantee of what this agent sends.
    #[arg(long, value_enum, default_value_t = DeliveryFlag::AtMostOnce)]
    pub(crate) delivery: DeliveryFlag,
    /// This socket's identity, 32 hex digits; empty for a random one.
    #[arg(long, value_name = "HEX32", default_value = "", value_parser = parse_optional_peer)]
    pub(crate) identity: OptionalPeer,
    /// Seconds a source stays after sending (and the close's grace time).
    #[arg(long, value_name = "SECS", default_value = "1.0", value_parser = parse_seconds)]
    pub(crate) linger: Duration,
    /// Wrap the connection in TLS (true or false).
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, default_value = "false")]
    pub(crate) tls: bool,
    /// TLS certificate chain (PEM): the bind end's; the connect end presents it if given.
    #[arg(long, value_name = "PATH", default_value = "")]
    pub(crate) tls_cert: String,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", default_value = "")]
    pub(crate) tls_key: String,
    /// CA certificate (PEM): the connect end trusts it; on the bind end, clients must
    /// present a certificate it issued (mutual TLS).
    #[arg(long, value_name = "PATH", default_value = "")]
    pub(crate) tls_ca: String,
    /// The name the connect end expects in the server's certificate.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub(crate) tls_server_name: String,
}

/// An identity that may be left empty (then random).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OptionalPeer(pub(crate) Option<PeerId>);

/// An address of any scheme the library takes, checked before any I/O: a
/// bare `host:port` (an IPv6 host in brackets), `tcp://`, `unix://`,
/// `inproc://`, `tls://`, `ws://`, `wss://`. A scheme this build lacks is refused here.
pub(crate) fn parse_addr(addr: &str) -> Result<String, String> {
    match smartsock::Address::parse(addr) {
        Ok(_) => Ok(addr.to_owned()),
        Err(smartsock::transport::TransportError::BadAddress { reason, .. }) => {
            Err(format!("{reason} (as 127.0.0.1:5555, unix:///tmp/app.sock or inproc://name)"))
        }
        Err(other) => Err(other.to_string()),
    }
}

fn parse_peer(text: &str) -> Result<PeerId, String> {
    text.parse().map_err(|_| "expected 32 hex digits, as 00112233445566778899aabbccddeeff".to_owned())
}

fn parse_optional_peer(text: &str) -> Result<OptionalPeer, String> {
    if text.is_empty() { Ok(OptionalPeer(None)) } else { parse_peer(text).map(|id| OptionalPeer(Some(id))) }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is not a usable number of seconds"))
}

/// `host:port` from separate host and port, with brackets around an IPv6 host.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn addresses_are_checked() {
        assert!(parse_addr("127.0.0.1:5555").is_ok());
        assert!(parse_addr("localhost:0").is_ok());
        assert!(parse_addr("[::1]:5555").is_ok());
        assert!(parse_addr("127.0.0.1").is_err());
        assert!(parse_addr(":5555").is_err());
        assert!(parse_addr("::1:5555").is_err());
        assert!(parse_addr("127.0.0.1:99999").is_err());
        assert!(parse_addr("tcp://127.0.0.1:5555").is_ok());
        assert!(parse_addr("unix:///tmp/app.sock").is_ok());
        assert!(parse_addr("inproc://jobs").is_ok());
        assert!(parse_addr("unix://").is_err());
        assert!(parse_addr("ipc:///tmp/x").is_err());
        assert!(parse_addr("tls://127.0.0.1:5555").is_ok());
        assert!(parse_addr("ws://127.0.0.1:5555/feed").is_ok());
        assert!(parse_addr("wss://localhost:5555").is_ok());
        assert!(parse_addr("tls://127.0.0.1").is_err());
    }

    #[test]
    fn agent_flags_all_take_values() {
        let cli = Cli::try_parse_from([
            "smartsock",
            "agent",
            "--role",
            "bind",
            "--tls",
            "false",
            "--identity",
            "",
            "--linger",
            "0.5",
        ])
        .unwrap();
        let Command::Agent(args) = cli.command else { panic!("not the agent") };
        assert_eq!(args.role, Role::Bind);
        assert!(!args.tls);
        assert!(args.identity.0.is_none());
        assert_eq!(args.linger, Duration::from_millis(500));
        assert!(Cli::try_parse_from(["smartsock", "agent", "--tls"]).is_err());
        assert!(Cli::try_parse_from(["smartsock", "agent", "--tls", "yes"]).is_err());
    }

    #[test]
    fn recv_needs_an_address_and_one_format() {
        assert!(Cli::try_parse_from(["smartsock", "recv"]).is_err());
        assert!(
            Cli::try_parse_from(["smartsock", "recv", "--bind", "127.0.0.1:0", "--hex", "--json"]).is_err()
        );
        assert!(Cli::try_parse_from(["smartsock", "recv", "--bind", "a:1", "--connect", "b:2"]).is_ok());
    }

    #[test]
    fn send_count_repeats_the_messages_given() {
        let parse =
            |args: &[&str]| Cli::try_parse_from([&["smartsock", "send", "--connect", "a:1"], args].concat());
        let Command::Send(args) = parse(&["--count", "3", "x", "y"]).unwrap().command else {
            panic!("not send")
        };
        assert_eq!((args.count, args.messages.len()), (3, 2));
        let Command::Send(args) = parse(&["x"]).unwrap().command else { panic!("not send") };
        assert_eq!(args.count, 1);
        assert!(parse(&["--count", "0", "x"]).is_err(), "nothing to send");
        assert!(parse(&["--count", "3"]).is_err(), "stdin is read once, as it comes");
    }

    #[test]
    fn hosts_and_ports_join() {
        assert_eq!(join_host_port("127.0.0.1", 1), "127.0.0.1:1");
        assert_eq!(join_host_port("::1", 1), "[::1]:1");
        assert_eq!(join_host_port("[::1]", 1), "[::1]:1");
    }
}
