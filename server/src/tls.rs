//! Optional TLS (`--tls-cert FILE --tls-key FILE`, PEM), on rustls: every HTTP listener of
//! the process (the balancer, the app servers, the dashboard) then serves HTTPS and WSS,
//! and the process speaks TLS to the others (the balancer to its app servers, the
//! dashboard's health probes, the load simulator), trusting `--tls-ca FILE`, or the
//! certificate itself when no CA is given (one self-signed certificate for the whole
//! cluster). A cluster runs with TLS or without it, not half of each.
//!
//! Written here, and not taken from a crate: only the accept loop ([`TlsListener`]),
//! because axum's own `serve` takes any [`Listener`] and the TLS itself is rustls's.
//! Handshakes run side by side, each within [`HANDSHAKE_TIMEOUT`], so a slow or silent
//! client never holds up the next connection.

use std::{io, path::Path, sync::Arc, time::Duration};

use axum::serve::Listener;
use futures_util::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// The longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// This process's TLS: what it serves with, and what it trusts when it calls the others.
#[derive(Clone)]
pub struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Loads the certificate chain and key (and the CA to trust, if not the certificate
    /// itself); an error names the file and what is wrong with it, never the key.
    pub fn load(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<Self, String> {
        let chain = certificates(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|error| format!("--tls-key {}: no private key read ({error})", key.display()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key)
            .map_err(|error| format!("--tls-cert and --tls-key do not make a certificate: {error}"))?;
        let mut roots = rustls::RootCertStore::empty();
        let trusted = match ca {
            Some(ca) => certificates(ca)?,
            None => chain,
        };
        for certificate in trusted {
            roots
                .add(certificate)
                .map_err(|error| format!("a certificate to trust cannot be used: {error}"))?;
        }
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// What this process's clients use to call the others over TLS.
    pub fn client_config(&self) -> rustls::ClientConfig {
        (*self.client).clone()
    }

    /// `listener`, speaking TLS.
    pub fn listen<L: Listener>(&self, listener: L) -> TlsListener<L> {
        TlsListener {
            inner: listener,
            acceptor: TlsAcceptor::from(self.server.clone()),
            handshakes: FuturesUnordered::new(),
        }
    }
}

/// `http` or `https`, for the URLs a process builds to call the others.
pub fn scheme(tls: Option<&Tls>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let read = |error: rustls::pki_types::pem::Error| format!("{}: {error}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(chain)
}

type Handshake<L> = BoxFuture<'static, Option<(TlsStream<<L as Listener>::Io>, <L as Listener>::Addr)>>;

/// A listener whose connections have finished their TLS handshake.
pub struct TlsListener<L: Listener> {
    inner: L,
    acceptor: TlsAcceptor,
    handshakes: FuturesUnordered<Handshake<L>>,
}

impl<L> Listener for TlsListener<L>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    type Io = TlsStream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                (io, addr) = self.inner.accept() => {
                    let acceptor = self.acceptor.clone();
                    self.handshakes.push(Box::pin(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                            Ok(Ok(stream)) => Some((stream, addr)),
                            Ok(Err(error)) => {
                                tracing::debug!(?addr, %error, "a TLS handshake failed");
                                None
                            }
                            Err(_) => None,
                        }
                    }));
                }
                Some(done) = self.handshakes.next(), if !self.handshakes.is_empty() => {
                    if let Some(ready) = done {
                        return ready;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
