//! A small TLS proxy for the tests: a CA made per test, a server
//! certificate for `127.0.0.1` signed by it, and a loopback listener that
//! terminates TLS and forwards the bytes to a plain-HTTP upstream (e.g.
//! `wrangler dev`), as a deployed edge's `https://` would.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A running proxy; stopped when dropped.
#[derive(Debug)]
pub struct TlsProxy {
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// The CA certificate (PEM) that signed the proxy's certificate.
    pub ca_file: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsProxy {
    /// Starts a proxy to `127.0.0.1:upstream_port`, writing its CA to
    /// `dir/ca.pem`.
    pub fn start(upstream_port: u16, dir: &Path) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Equilibrium test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
        let cert = params
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("server certificate");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write CA");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let conn = tokio::select! {
                        c = listener.accept() => c,
                        _ = &mut stopped => return,
                    };
                    let Ok((client, _)) = conn else { continue };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        // A handshake the client aborts (an untrusted
                        // certificate) simply ends this connection.
                        let Ok(mut tls) = acceptor.accept(client).await else {
                            return;
                        };
                        let Ok(mut upstream) =
                            tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                    });
                }
            });
        });
        Self {
            base: format!("https://127.0.0.1:{port}"),
            ca_file,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
