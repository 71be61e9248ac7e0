//! [`PeerInfo`] and [`PeerCertificate`]: what the transport knows about a
//! connected peer beyond its identity, for the application to decide whom it
//! talks to.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use smartsock_framing::PeerId;

use crate::event::Side;

/// A connected peer: its identity, where it is, and, over TLS, the
/// certificate it proved it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The identity from its HELLO.
    pub id: PeerId,
    /// Its address, as its [`Event::PeerConnected`](crate::Event::PeerConnected) said.
    pub addr: String,
    /// Which end this socket is.
    pub side: Side,
    /// The peer's verified certificate: the server's on the connect end of a
    /// TLS connection, the client's on the bind end under mutual TLS. `None`
    /// without TLS, or when the client presented none.
    pub certificate: Option<Arc<PeerCertificate>>,
}

/// A peer's end-entity certificate, checked by the TLS handshake against the
/// configured CAs before the peer could send a byte of the protocol.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCertificate {
    /// The subject's distinguished name, as `CN=client, O=example` (RFC 4514
    /// order as the certificate has it); empty if it has none.
    pub subject: String,
    /// The subject alternative names: `DNS:name`, `IP:addr`, `URI:uri`,
    /// `email:addr`, in the certificate's order.
    pub subject_alt_names: Vec<String>,
    /// The certificate itself, DER encoded, for checks of your own.
    pub der: Vec<u8>,
}

impl PeerCertificate {
    /// The DNS names among the subject alternative names.
    pub fn dns_names(&self) -> impl Iterator<Item = &str> {
        self.subject_alt_names.iter().filter_map(|name| name.strip_prefix("DNS:"))
    }
}

impl fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The DER bytes would drown the names that matter.
        f.debug_struct("PeerCertificate")
            .field("subject", &self.subject)
            .field("subject_alt_names", &self.subject_alt_names)
            .field("der_len", &self.der.len())
            .finish()
    }
}

/// The certificates of live connections, by the address their events carry.
///
/// Kept beside the peer table rather than in it, so that a stream's wrapper
/// (TLS) can record what it learned without the connection code knowing
/// about TLS. An address can have more than one entry for a moment (a second
/// connection to the same server, refused as a duplicate), so entries are a
/// list, oldest first, each removed by its own guard.
#[derive(Default)]
pub(crate) struct CertificateTable {
    by_addr: Mutex<HashMap<Arc<str>, Vec<Arc<PeerCertificate>>>>,
}

impl CertificateTable {
    /// Records `certificate` for `addr` until the guard is dropped.
    #[cfg(feature = "tls")]
    pub(crate) fn insert(
        self: &Arc<Self>,
        addr: Arc<str>,
        certificate: Arc<PeerCertificate>,
    ) -> CertificateGuard {
        let mut table = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        table.entry(addr.clone()).or_default().push(certificate.clone());
        CertificateGuard { table: self.clone(), addr, certificate }
    }

    pub(crate) fn get(&self, addr: &str) -> Option<Arc<PeerCertificate>> {
        let table = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        table.get(addr).and_then(|list| list.first().cloned())
    }
}

/// Removes its certificate from the table when the connection ends.
#[cfg(feature = "tls")]
pub(crate) struct CertificateGuard {
    table: Arc<CertificateTable>,
    addr: Arc<str>,
    certificate: Arc<PeerCertificate>,
}

#[cfg(feature = "tls")]
impl Drop for CertificateGuard {
    fn drop(&mut self) {
        let mut table = self.table.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = table.get_mut(&self.addr) {
            if let Some(at) = list.iter().position(|c| Arc::ptr_eq(c, &self.certificate)) {
                list.remove(at);
            }
            if list.is_empty() {
                table.remove(&self.addr);
            }
        }
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    fn certificate(subject: &str) -> Arc<PeerCertificate> {
        Arc::new(PeerCertificate {
            subject: subject.into(),
            subject_alt_names: vec!["DNS:a".into(), "IP:127.0.0.1".into()],
            der: vec![1, 2, 3],
        })
    }

    #[test]
    fn entries_live_as_long_as_their_guards() {
        let table = Arc::new(CertificateTable::default());
        let first = table.insert("h:1".into(), certificate("CN=first"));
        let second = table.insert("h:1".into(), certificate("CN=second"));
        assert_eq!(table.get("h:1").unwrap().subject, "CN=first");
        drop(first);
        assert_eq!(table.get("h:1").unwrap().subject, "CN=second");
        drop(second);
        assert!(table.get("h:1").is_none());
        assert!(table.by_addr.lock().unwrap().is_empty());
        assert_eq!(certificate("x").dns_names().collect::<Vec<_>>(), ["a"]);
    }
}
