//! A throwaway certificate authority for TLS tests: certificates made by
//! rcgen in the test, never read from disk.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use smartsock_transport::tls;
use smartsock_transport::tls::rustls::{ClientConfig, ServerConfig};

/// A CA that issues leaf certificates.
pub(crate) struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, both PEM.
pub(crate) struct Leaf {
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub(crate) fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names` (DNS names or IP addresses), subject `CN=common_name`.
    pub(crate) fn leaf(&self, common_name: &str, names: &[&str]) -> Leaf {
        self.leaf_with(common_name, names, |_| {})
    }

    /// A client leaf that carries `identity` as `urn:uuid:` (hyphenated), for
    /// identity binding.
    pub(crate) fn identity_leaf(&self, common_name: &str, identity: [u8; 16]) -> Leaf {
        let hex: String = identity.iter().map(|b| format!("{b:02x}")).collect();
        let uuid = format!(
            "urn:uuid:{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        );
        self.leaf_with(common_name, &[], |params| {
            params.subject_alt_names.push(rcgen::SanType::URI(uuid.as_str().try_into().unwrap()));
        })
    }

    /// A leaf that expired a year ago.
    pub(crate) fn expired_leaf(&self, common_name: &str, names: &[&str]) -> Leaf {
        self.leaf_with(common_name, names, |params| {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    fn leaf_with(
        &self,
        common_name: &str,
        names: &[&str],
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        tweak(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert: cert.pem(), key: key.serialize_pem() }
    }

    /// A server config for `localhost` and `127.0.0.1`, requiring client
    /// certificates from `client_ca` if given.
    pub(crate) fn server(&self, client_ca: Option<&Pki>) -> Arc<ServerConfig> {
        let leaf = self.leaf("server", &["localhost", "127.0.0.1"]);
        Self::server_from(&leaf, client_ca)
    }

    pub(crate) fn server_from(leaf: &Leaf, client_ca: Option<&Pki>) -> Arc<ServerConfig> {
        let ca = client_ca.map(Pki::ca_pem);
        tls::server_config(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.as_deref().map(str::as_bytes))
            .unwrap()
    }

    /// A client that trusts this CA, presenting `cert` if given.
    pub(crate) fn client(&self, cert: Option<&Leaf>) -> Arc<ClientConfig> {
        tls::client_config(self.ca_pem().as_bytes(), cert.map(|c| (c.cert.as_bytes(), c.key.as_bytes())))
            .unwrap()
    }
}
