//! TLS (feature `tls`): rustls on its ring backend, through tokio-rustls.
//!
//! TLS only makes the byte stream; the protocol inside is the same
//! `connection::serve` as over TCP. The bind end is the TLS server, the
//! connect end the client. Hand in ready rustls configs
//! ([`TransportConfig::tls_server`](crate::TransportConfig::tls_server),
//! [`TransportConfig::tls_client`](crate::TransportConfig::tls_client)) or
//! build them from PEM with the helpers here:
//!
//! ```
//! use smartsock_transport::tls;
//!
//! # fn pem() -> (String, String, String) {
//! #     let key = rcgen::KeyPair::generate().unwrap();
//! #     let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
//! #     params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! #     let cert = params.self_signed(&key).unwrap();
//! #     (cert.pem(), key.serialize_pem(), cert.pem())
//! # }
//! let (cert_chain, key, ca) = pem();
//! // A server, and one that also requires client certificates issued by `ca`.
//! let server = tls::server_config(cert_chain.as_bytes(), key.as_bytes(), None)?;
//! let mutual = tls::server_config(cert_chain.as_bytes(), key.as_bytes(), Some(ca.as_bytes()))?;
//! // A client that trusts `ca`, and one that also presents a certificate.
//! let client = tls::client_config(ca.as_bytes(), None)?;
//! let with_cert = tls::client_config(ca.as_bytes(), Some((cert_chain.as_bytes(), key.as_bytes())))?;
//! # let _ = (server, mutual, client, with_cert);
//!
//! // PEM that holds no certificate is refused with a clear error.
//! let error = tls::client_config(b"not pem", None).unwrap_err();
//! assert_eq!(error.to_string(), "invalid transport configuration: TLS CA bundle: no certificate in the PEM");
//! # Ok::<(), smartsock_transport::TransportError>(())
//! ```

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};

pub use rustls;

use crate::TransportError;
use crate::event::TlsFailure;
use crate::peer_info::PeerCertificate;

/// A server config from a PEM certificate chain (leaf first) and its PEM
/// private key. With `client_ca`, a PEM bundle of CAs, every client must
/// present a certificate issued by one of them (mutual TLS); without it, no
/// client certificate is asked for.
pub fn server_config(
    cert_chain: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, TransportError> {
    let chain = certificates(cert_chain, "TLS certificate chain")?;
    let key = private_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = Arc::new(roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| invalid("TLS client CA", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| invalid("TLS certificate and key", e))?;
    Ok(Arc::new(config))
}

/// A client config that trusts the CAs of the PEM bundle `ca`, and, with
/// `client_cert` (PEM chain, PEM key), presents that certificate to servers
/// that ask for one.
pub fn client_config(
    ca: &[u8],
    client_cert: Option<(&[u8], &[u8])>,
) -> Result<Arc<ClientConfig>, TransportError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", e))?
        .with_root_certificates(roots(ca)?);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = certificates(chain, "TLS client certificate chain")?;
            builder
                .with_client_auth_cert(chain, private_key(key)?)
                .map_err(|e| invalid("TLS client certificate", e))?
        }
    };
    Ok(Arc::new(config))
}

/// [`server_config`] from PEM files.
pub fn server_config_from_files(
    cert_chain: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TransportError> {
    let ca = client_ca.map(read).transpose()?;
    server_config(&read(cert_chain)?, &read(key)?, ca.as_deref())
}

/// [`client_config`] from PEM files.
pub fn client_config_from_files(
    ca: &Path,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TransportError> {
    let cert =
        client_cert.map(|(chain, key)| Ok::<_, TransportError>((read(chain)?, read(key)?))).transpose()?;
    client_config(&read(ca)?, cert.as_ref().map(|(chain, key)| (chain.as_slice(), key.as_slice())))
}

/// The crypto provider for configs made here: named explicitly, so that a
/// process that links another provider too does not have to pick a default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path)
        .map_err(|e| TransportError::InvalidConfig(format!("cannot read {}: {e}", path.display())))
}

fn invalid(what: &str, error: impl std::fmt::Display) -> TransportError {
    TransportError::InvalidConfig(format!("{what}: {error}"))
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let chain =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| invalid(what, e))?;
    if chain.is_empty() {
        return Err(invalid(what, "no certificate in the PEM"));
    }
    Ok(chain)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| invalid("TLS private key", e))
}

fn roots(pem: &[u8]) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem, "TLS CA bundle")? {
        roots.add(cert).map_err(|e| invalid("TLS CA bundle", e))?;
    }
    Ok(roots)
}

/// The server name a client checks for `host_port`: the configured name if
/// there is one, else the host (an IP address is checked as one).
pub(crate) fn server_name(
    host_port: &str,
    configured: Option<&str>,
) -> Result<ServerName<'static>, TransportError> {
    let host = match configured {
        Some(name) => name,
        None => {
            let (host, _port) = host_port.rsplit_once(':').unwrap_or((host_port, ""));
            host.trim_start_matches('[').trim_end_matches(']')
        }
    };
    ServerName::try_from(host.to_owned()).map_err(|_| TransportError::BadAddress {
        addr: host_port.to_owned(),
        reason: "the TLS server name is neither a DNS name nor an IP address",
    })
}

/// Runs the server side of the handshake.
pub(crate) async fn accept<S>(
    config: Arc<ServerConfig>,
    stream: S,
) -> Result<(tokio_rustls::server::TlsStream<S>, Option<PeerCertificate>), TlsFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stream = tokio_rustls::TlsAcceptor::from(config).accept(stream).await.map_err(|e| failure(&e))?;
    let certificate = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(describe);
    Ok((stream, certificate))
}

/// Runs the client side of the handshake.
pub(crate) async fn connect<S>(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    stream: S,
) -> Result<(tokio_rustls::client::TlsStream<S>, Option<PeerCertificate>), TlsFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stream =
        tokio_rustls::TlsConnector::from(config).connect(name, stream).await.map_err(|e| failure(&e))?;
    let certificate = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(describe);
    Ok((stream, certificate))
}

/// Names a failed handshake for the event, from whichever end saw it: an
/// error found here, or the alert the peer sent about ours.
pub(crate) fn failure(error: &io::Error) -> TlsFailure {
    let Some(tls) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => TlsFailure::Closed,
            _ => TlsFailure::Other(error.to_string()),
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::BadName
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
            other => TlsFailure::BadCertificate(format!("{other:?}")),
        },
        rustls::Error::NoCertificatesPresented => TlsFailure::NoClientCertificate,
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::UnknownCA => TlsFailure::UnknownIssuer,
            AlertDescription::CertificateExpired => TlsFailure::Expired,
            AlertDescription::CertificateRequired => TlsFailure::NoClientCertificate,
            AlertDescription::BadCertificate | AlertDescription::CertificateUnknown => {
                TlsFailure::BadCertificate(format!("the peer refused our certificate ({alert:?})"))
            }
            other => TlsFailure::Other(format!("the peer sent the alert {other:?}")),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => TlsFailure::NotTls,
        other => TlsFailure::Other(other.to_string()),
    }
}

/// The identities a certificate vouches for: each subject alternative name
/// `URI:urn:uuid:<uuid>` (hyphens optional, any case).
pub(crate) fn certified_identities(certificate: &PeerCertificate) -> Vec<smartsock_framing::PeerId> {
    certificate
        .subject_alt_names
        .iter()
        .filter_map(|name| {
            let uri = name.strip_prefix("URI:")?;
            let uuid = uri.get(..9).filter(|p| p.eq_ignore_ascii_case("urn:uuid:")).map(|_| &uri[9..])?;
            uuid.replace('-', "").parse().ok()
        })
        .collect()
}

/// The names of a verified certificate; a certificate rustls accepted but
/// x509-parser cannot read (unlikely) still shows its DER.
fn describe(der: &CertificateDer<'_>) -> PeerCertificate {
    let mut described =
        PeerCertificate { subject: String::new(), subject_alt_names: Vec::new(), der: der.to_vec() };
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else {
        return described;
    };
    described.subject = certificate.subject().to_string();
    if let Ok(Some(names)) = certificate.subject_alternative_name() {
        use x509_parser::extensions::GeneralName;
        for name in &names.value.general_names {
            described.subject_alt_names.push(match name {
                GeneralName::DNSName(dns) => format!("DNS:{dns}"),
                GeneralName::RFC822Name(email) => format!("email:{email}"),
                GeneralName::URI(uri) => format!("URI:{uri}"),
                GeneralName::IPAddress(bytes) => match <[u8; 4]>::try_from(*bytes) {
                    Ok(v4) => format!("IP:{}", std::net::Ipv4Addr::from(v4)),
                    Err(_) => match <[u8; 16]>::try_from(*bytes) {
                        Ok(v6) => format!("IP:{}", std::net::Ipv6Addr::from(v6)),
                        Err(_) => continue,
                    },
                },
                _ => continue,
            });
        }
    }
    described
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_or_the_configuration() {
        assert_eq!(
            server_name("example.com:443", None).unwrap(),
            ServerName::try_from("example.com").unwrap()
        );
        assert_eq!(server_name("[::1]:443", None).unwrap(), ServerName::try_from("::1").unwrap());
        assert_eq!(server_name("10.0.0.1:1", Some("svc")).unwrap(), ServerName::try_from("svc").unwrap());
        assert!(server_name("h:1", Some("not a name!")).is_err());
    }

    #[test]
    fn failures_are_named_from_the_rustls_error() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let cases = [
            (
                wrap(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
                TlsFailure::UnknownIssuer,
            ),
            (wrap(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)), TlsFailure::BadName),
            (wrap(rustls::Error::InvalidCertificate(CertificateError::Expired)), TlsFailure::Expired),
            (wrap(rustls::Error::NoCertificatesPresented), TlsFailure::NoClientCertificate),
            (wrap(rustls::Error::AlertReceived(AlertDescription::UnknownCA)), TlsFailure::UnknownIssuer),
            (
                wrap(rustls::Error::AlertReceived(AlertDescription::CertificateRequired)),
                TlsFailure::NoClientCertificate,
            ),
            (io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof"), TlsFailure::Closed),
        ];
        for (error, expected) in cases {
            assert_eq!(failure(&error), expected, "{error}");
        }
    }

    #[test]
    fn identities_come_from_urn_uuid_names() {
        let certificate = PeerCertificate {
            subject: String::new(),
            subject_alt_names: vec![
                "DNS:a.example".into(),
                "URI:urn:uuid:00112233-4455-6677-8899-AABBCCDDEEFF".into(),
                "URI:URN:UUID:ffeeddccbbaa99887766554433221100".into(),
                "URI:urn:uuid:not-a-uuid".into(),
                "URI:https://example.com".into(),
            ],
            der: Vec::new(),
        };
        let ids: Vec<String> = certified_identities(&certificate).iter().map(ToString::to_string).collect();
        assert_eq!(ids, ["00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"]);
    }

    #[test]
    fn pem_without_keys_or_certificates_is_refused_clearly() {
        let error = server_config(b"", b"", None).unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid transport configuration: TLS certificate chain: no certificate in the PEM"
        );
    }
}
