//! TLS on the links between chmpx daemons (CHMPX's SSL, SSL_VERIFY_PEER, SSL_MIN_VER, CAPATH,
//! SERVER_CERT/SERVER_PRIKEY, SLAVE_CERT/SLAVE_PRIKEY), with rustls and PEM files.
//!
//! A node whose entry says `SSL = on` accepts only TLS on its data port; every node that dials
//! it speaks TLS and checks the certificate it shows against CAPATH and the node's NAME (a
//! host name or an IP address, which the certificate must name). With `SSL_VERIFY_PEER = on`
//! the node also asks each dialler for a certificate signed by a CA in its CAPATH; a dialler
//! shows its SLAVE_CERT (a server without one shows its SERVER_CERT, as a server node of CHMPX
//! does). The control port stays plain text, as in CHMPX.
//!
//! The shared secret (`SECRET`) and the cluster name are still checked inside the TLS session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Most CA files read from a CAPATH directory (a typo such as `/etc` must not read thousands).
pub const CAPATH_FILES_MAX: usize = 256;

/// The oldest TLS version a node accepts (SSL_MIN_VER).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// The TLS files and choices of this node (its entry's values, GLOBAL's where it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's data port speaks TLS (SSL).
    pub listen: bool,
    /// Ask diallers for a certificate (SSL_VERIFY_PEER).
    pub verify_peer: bool,
    /// A CA file, or a directory of them, to check peers' certificates (CAPATH).
    pub capath: Option<PathBuf>,
    /// Certificate chain and key of the data port (SERVER_CERT, SERVER_PRIKEY).
    pub server_cert: Option<PathBuf>,
    pub server_key: Option<PathBuf>,
    /// Certificate chain and key shown when dialling (SLAVE_CERT, SLAVE_PRIKEY).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// SSL_MIN_VER.
    pub min_version: MinVersion,
}

/// Why TLS could not be set up; each names the config key, the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A key the chosen TLS use needs is not set.
    #[error("{key} is not set, but {why}; set it in this node's entry or in [GLOBAL]")]
    Missing {
        /// The config key.
        key: &'static str,
        /// What needs it.
        why: String,
    },
    /// A file could not be read or holds no usable PEM item.
    #[error("{key} {path}: {reason}")]
    File {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// rustls refused the combination (a key that does not match its certificate, ...).
    #[error("{what}: {source}")]
    Rustls {
        /// Which configuration.
        what: &'static str,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// A peer's NAME cannot be checked against a certificate.
    #[error("node {peer:?}: {host:?} is neither a DNS name nor an IP address a certificate can name; use the name its certificate was issued for")]
    ServerName {
        /// The peer's id.
        peer: String,
        /// Its host as configured.
        host: String,
    },
}

/// The TLS side of a link manager: an acceptor when this node's data port speaks TLS, a
/// connector when it dials a node whose port does.
#[derive(Clone, Default)]
pub struct LinkTls {
    pub acceptor: Option<TlsAcceptor>,
    pub connector: Option<TlsConnector>,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTls")
            .field("accepts", &self.acceptor.is_some())
            .field("dials", &self.connector.is_some())
            .finish()
    }
}

impl LinkTls {
    /// Builds what `files` asks for: the acceptor when `files.listen`, the connector when
    /// `dials_tls` (some peer this node dials has SSL on).
    pub fn build(files: &TlsFiles, dials_tls: bool) -> Result<LinkTls, TlsError> {
        let acceptor = if files.listen {
            Some(TlsAcceptor::from(Arc::new(server_config(files)?)))
        } else {
            None
        };
        let connector = if dials_tls {
            Some(TlsConnector::from(Arc::new(client_config(files)?)))
        } else {
            None
        };
        Ok(LinkTls {
            acceptor,
            connector,
        })
    }
}

/// The name a peer's certificate must carry: its configured host (a DNS name or an IP).
pub fn server_name(peer: &str, host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName {
        peer: peer.to_string(),
        host: host.to_string(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// SSL_MIN_VER = TLSV1.2 (and DEFAULT): 1.3 preferred, 1.2 accepted.
static TLS12_UP: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];
/// SSL_MIN_VER = TLSV1.3.
static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(min: MinVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match min {
        MinVersion::Tls12 => &TLS12_UP,
        MinVersion::Tls13 => &TLS13_ONLY,
    }
}

fn rustls_err(what: &'static str) -> impl FnOnce(rustls::Error) -> TlsError {
    move |source| TlsError::Rustls { what, source }
}

fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let why = "SSL is on for this node's data port";
    let cert = required(&files.server_cert, "SERVER_CERT", why)?;
    let key = required(&files.server_key, "SERVER_PRIKEY", why)?;
    let chain = read_certs("SERVER_CERT", cert)?;
    let key = read_key("SERVER_PRIKEY", key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(files.min_version))
        .map_err(rustls_err("TLS versions"))?;
    let builder = if files.verify_peer {
        let capath = required(
            &files.capath,
            "CAPATH",
            "SSL_VERIFY_PEER is on: diallers' certificates are checked against it",
        )?;
        let roots = read_roots(capath)?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::File {
            key: "CAPATH",
            path: capath.to_path_buf(),
            reason: format!("cannot check client certificates with it: {e}"),
        })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder
        .with_single_cert(chain, key)
        .map_err(rustls_err("SERVER_CERT and SERVER_PRIKEY"))
}

fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, TlsError> {
    let capath = required(
        &files.capath,
        "CAPATH",
        "a node this one dials has SSL on, and its certificate is checked against it",
    )?;
    let roots = read_roots(capath)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(files.min_version))
        .map_err(rustls_err("TLS versions"))?
        .with_root_certificates(roots);
    // What this node shows when a peer asks: its SLAVE_CERT, else (a server) its SERVER_CERT.
    let pair = match (&files.client_cert, &files.client_key) {
        (Some(c), Some(k)) => Some((("SLAVE_CERT", c), ("SLAVE_PRIKEY", k))),
        (Some(_), None) | (None, Some(_)) => {
            return Err(TlsError::Missing {
                key: if files.client_cert.is_some() {
                    "SLAVE_PRIKEY"
                } else {
                    "SLAVE_CERT"
                },
                why: "SLAVE_CERT and SLAVE_PRIKEY go together".into(),
            })
        }
        (None, None) => match (&files.server_cert, &files.server_key) {
            (Some(c), Some(k)) => Some((("SERVER_CERT", c), ("SERVER_PRIKEY", k))),
            _ => None,
        },
    };
    match pair {
        Some(((ck, c), (kk, k))) => builder
            .with_client_auth_cert(read_certs(ck, c)?, read_key(kk, k)?)
            .map_err(rustls_err("the dialling certificate and key")),
        None => Ok(builder.with_no_client_auth()),
    }
}

fn required<'a>(
    value: &'a Option<PathBuf>,
    key: &'static str,
    why: &str,
) -> Result<&'a Path, TlsError> {
    value.as_deref().ok_or_else(|| TlsError::Missing {
        key,
        why: why.to_string(),
    })
}

fn file_err(key: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        key,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every certificate of a PEM file (none if it holds no CERTIFICATE block).
fn read_pem_certs(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(key, path, format!("cannot read it: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(key, path, format!("not valid PEM: {e}")))
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = read_pem_certs(key, path)?;
    if certs.is_empty() {
        return Err(file_err(
            key,
            path,
            "holds no CERTIFICATE block; give a PEM certificate file",
        ));
    }
    Ok(certs)
}

fn read_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        file_err(
            key,
            path,
            format!("no usable private key ({e}); give a PEM file with one PRIVATE KEY block"),
        )
    })
}

/// Every CA certificate of CAPATH: one PEM file, or the `.pem`/`.crt`/`.cer` files of a
/// directory. In a directory, a file with no CERTIFICATE block (a private key kept beside the
/// certificates, say) is skipped with a warning; a file that is not valid PEM, or a directory
/// with no certificate at all, is an error.
fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let is_dir = path.is_dir();
    let files = if is_dir {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| file_err("CAPATH", path, format!("cannot list it: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "pem" || x == "crt" || x == "cer")
            })
            .take(CAPATH_FILES_MAX + 1)
            .collect();
        if files.len() > CAPATH_FILES_MAX {
            return Err(file_err(
                "CAPATH",
                path,
                format!("holds more than {CAPATH_FILES_MAX} certificate files; point it at the cluster's CA file or a directory of its own"),
            ));
        }
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut roots = RootCertStore::empty();
    for f in &files {
        let certs = if is_dir {
            read_pem_certs("CAPATH", f)?
        } else {
            read_certs("CAPATH", f)?
        };
        if certs.is_empty() {
            tracing::warn!(file = %f.display(), "CAPATH: skipped, it holds no CERTIFICATE block");
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| file_err("CAPATH", f, format!("not a usable CA certificate: {e}")))?;
        }
    }
    if roots.is_empty() {
        return Err(file_err(
            "CAPATH",
            path,
            "holds no CA certificate (.pem, .crt or .cer files)",
        ));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles {
            listen: true,
            verify_peer: false,
            capath: None,
            server_cert: Some(dir.join("server.pem")),
            server_key: Some(dir.join("server.key")),
            client_cert: None,
            client_key: None,
            min_version: MinVersion::Tls12,
        }
    }

    fn err(files: &TlsFiles, dials: bool) -> String {
        LinkTls::build(files, dials).unwrap_err().to_string()
    }

    #[test]
    fn plain_links_need_no_files() {
        let mut f = files(Path::new("/nonexistent"));
        f.listen = false;
        let tls = LinkTls::build(&f, false).unwrap();
        assert!(tls.acceptor.is_none() && tls.connector.is_none());
    }

    #[test]
    fn missing_keys_and_files_are_named_with_what_needs_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = files(dir.path());
        f.server_key = None;
        let e = err(&f, false);
        assert!(
            e.contains("SERVER_PRIKEY is not set") && e.contains("SSL is on"),
            "{e}"
        );

        let f = files(dir.path());
        let e = err(&f, false);
        assert!(
            e.contains("SERVER_CERT") && e.contains("server.pem") && e.contains("cannot read"),
            "{e}"
        );

        std::fs::write(dir.path().join("server.pem"), "not a certificate\n").unwrap();
        let e = err(&f, false);
        assert!(e.contains("holds no CERTIFICATE block"), "{e}");

        let mut f = files(dir.path());
        f.listen = false;
        let e = err(&f, true);
        assert!(
            e.contains("CAPATH is not set") && e.contains("a node this one dials has SSL on"),
            "{e}"
        );

        let mut f = files(dir.path());
        f.listen = false;
        f.capath = Some(dir.path().to_path_buf());
        f.client_cert = Some(dir.path().join("slave.pem"));
        let e = err(&f, true);
        // CAPATH (a directory with one .pem file) is read first and holds no certificate.
        assert!(e.contains("CAPATH"), "{e}");
    }

    #[test]
    fn an_unusable_ca_file_is_named_as_capath() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let mut f = files(dir.path());
        f.listen = false;
        f.capath = Some(ca);
        let e = err(&f, true);
        assert!(e.contains("CAPATH") && e.contains("ca.pem"), "{e}");
    }

    /// A fresh self-signed CA: (certificate PEM, private key PEM).
    fn self_signed_ca() -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn a_capath_directory_skips_a_key_file_but_needs_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, key_pem) = self_signed_ca();
        std::fs::write(dir.path().join("ca-key.pem"), key_pem).unwrap();
        let mut f = files(dir.path());
        f.listen = false;
        (f.server_cert, f.server_key) = (None, None);
        f.capath = Some(dir.path().to_path_buf());
        let e = err(&f, true);
        assert!(
            e.contains("CAPATH") && e.contains("holds no CA certificate"),
            "{e}"
        );
        std::fs::write(dir.path().join("ca.pem"), ca_pem).unwrap();
        assert!(LinkTls::build(&f, true).unwrap().connector.is_some());
    }

    #[test]
    fn a_slave_cert_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, self_signed_ca().0).unwrap();
        let mut f = files(dir.path());
        f.listen = false;
        f.capath = Some(ca);
        (f.server_cert, f.server_key) = (None, None);
        assert!(LinkTls::build(&f, true).unwrap().connector.is_some());
        f.client_cert = Some(dir.path().join("slave.pem"));
        let e = err(&f, true);
        assert!(
            e.contains("SLAVE_PRIKEY is not set") && e.contains("go together"),
            "{e}"
        );
    }

    #[test]
    fn names_are_dns_names_or_ip_addresses() {
        assert!(server_name("a:1", "127.0.0.1").is_ok());
        assert!(server_name("a:1", "node1.example").is_ok());
        let e = server_name("a:1", "bad name!").unwrap_err().to_string();
        assert!(e.contains("neither a DNS name nor an IP address"), "{e}");
    }
}
