//! TLS settings from the command line: PEM files turned into the socket's
//! rustls configs, the same for `send`, `recv` and the agent.

use std::path::Path;

use smartsock::SocketBuilder;

use crate::Failure;

/// The PEM files and names given; empty strings are "not given", as the
/// agent contract spells them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TlsFiles<'a> {
    /// Certificate chain, presented as the server (bind) or client (connect).
    pub(crate) cert: &'a str,
    /// Its private key.
    pub(crate) key: &'a str,
    /// CAs trusted to have issued the server's certificate (connect).
    pub(crate) ca: &'a str,
    /// CAs every client certificate must come from (bind; mutual TLS).
    pub(crate) client_ca: &'a str,
    /// The name the server's certificate must carry, if not the host dialled.
    pub(crate) server_name: &'a str,
}

impl TlsFiles<'_> {
    fn any(&self) -> bool {
        [self.cert, self.key, self.ca, self.client_ca, self.server_name].iter().any(|s| !s.is_empty())
    }

    /// Sets the builder's TLS configs from the files: a server config when a
    /// certificate and key are given, a client config when a CA is (with
    /// the certificate as the client's own, for mutual TLS).
    pub(crate) fn apply(&self, builder: SocketBuilder) -> Result<SocketBuilder, Failure> {
        if !self.any() {
            return Ok(builder);
        }
        if self.cert.is_empty() != self.key.is_empty() {
            return Err(Failure::usage("--tls-cert and --tls-key go together"));
        }
        let mut builder = builder;
        let invalid = |e: smartsock::transport::TransportError| Failure::usage(e);
        if !self.cert.is_empty() {
            let client_ca = (!self.client_ca.is_empty()).then(|| Path::new(self.client_ca));
            let config = smartsock::tls::server_config_from_files(
                Path::new(self.cert),
                Path::new(self.key),
                client_ca,
            )
            .map_err(invalid)?;
            builder = builder.tls_server(config);
        } else if !self.client_ca.is_empty() {
            return Err(Failure::usage("--tls-client-ca needs --tls-cert and --tls-key (the server's own)"));
        }
        if !self.ca.is_empty() {
            let own = (!self.cert.is_empty()).then(|| (Path::new(self.cert), Path::new(self.key)));
            let config =
                smartsock::tls::client_config_from_files(Path::new(self.ca), own).map_err(invalid)?;
            builder = builder.tls_client(config);
        }
        if !self.server_name.is_empty() {
            builder = builder.tls_server_name(self.server_name);
        }
        Ok(builder)
    }
}
