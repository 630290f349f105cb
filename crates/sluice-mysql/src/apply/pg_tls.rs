//! TLS to PostgreSQL (the `type: postgres` sink and `sluice verify`), as
//! libpq does it: `sslmode` (`disable`, `prefer` — the default —,
//! `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM CA
//! file, or `system` for the system's roots) and `sslcert` / `sslkey` (a
//! client certificate and its key, PEM, for `cert` authentication) read
//! from the URL or the `key=value` string; rustls with the ring provider;
//! connect errors that name the host, the mode and the cause. Touches the
//! certificate files named, the system's certificate store for
//! `sslrootcert=system`, and the network.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::target::DbError;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS settings of a PostgreSQL URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of CA certificates, or `system`.
    pub root_cert: Option<String>,
    /// `sslcert`: the client certificate (PEM, chain allowed).
    pub client_cert: Option<String>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub client_key: Option<String>,
}

fn mode_of(v: &str) -> Result<SslMode, String> {
    Ok(match v {
        "disable" => SslMode::Disable,
        "allow" | "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        _ => {
            return Err(format!(
                "sslmode={v}: expected disable, prefer, require, verify-ca or verify-full"
            ))
        }
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a URL (`postgres://…?sslmode=…`)
/// or a `key=value` string; returns the rest (for `tokio_postgres`) and
/// the settings.
pub fn split(url: &str) -> Result<(String, PgTls), String> {
    let mut tls = PgTls {
        mode: SslMode::Prefer,
        root_cert: None,
        client_cert: None,
        client_key: None,
    };
    let mut take = |k: &str, v: &str| -> Result<bool, String> {
        match k {
            "sslmode" => tls.mode = mode_of(v)?,
            "sslrootcert" => tls.root_cert = Some(v.to_string()),
            "sslcert" => tls.client_cert = Some(v.to_string()),
            "sslkey" => tls.client_key = Some(v.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(&percent_decode(k), &percent_decode(v))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        // key=value pairs; values may be single-quoted.
        let mut kept = Vec::new();
        let mut rest = url.trim_start();
        while !rest.is_empty() {
            let eq = rest
                .find('=')
                .ok_or_else(|| format!("`{rest}`: expected key=value"))?;
            let key = rest[..eq].trim();
            let after = rest[eq + 1..].trim_start();
            let (value, len) = if let Some(q) = after.strip_prefix('\'') {
                let mut v = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                v.push(n);
                            }
                        }
                        '\'' => {
                            end = Some(i + 2);
                            break;
                        }
                        c => v.push(c),
                    }
                }
                (v, end.ok_or("unterminated quote in the connection string")?)
            } else {
                let n = after.find(char::is_whitespace).unwrap_or(after.len());
                (after[..n].to_string(), n)
            };
            let text = &after[..len];
            if !take(key, &value)? {
                kept.push(format!("{key}={text}"));
            }
            rest = after[len..].trim_start();
        }
        kept.join(" ")
    };
    Ok((rest, tls))
}

/// Parses a PostgreSQL URL: the `tokio_postgres` config and TLS settings.
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, PgTls), String> {
    let (rest, tls) = split(url)?;
    let mut cfg: tokio_postgres::Config = rest.parse().map_err(|e| format!("url: {e}"))?;
    cfg.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    Ok((cfg, tls))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any certificate, checks handshake signatures (`prefer`,
/// `require` without a CA: encryption without authentication, like libpq).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

/// Checks the chain against the CA but not the host name (`verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        mid: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end, mid, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// libpq's default CA file, `~/.postgresql/root.crt`, when it exists.
fn default_root() -> Option<String> {
    std::env::var_os("HOME")
        .map(|h| std::path::Path::new(&h).join(".postgresql/root.crt"))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
}

/// The trusted roots of `sslrootcert` (else of `default`).
fn roots(tls: &PgTls, default: Option<String>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let path = tls.root_cert.clone().or(default).ok_or_else(|| {
        format!(
            "sslmode={} needs the CA that signed the server's certificate: add \
             sslrootcert=/path/to/ca.pem (or sslrootcert=system) to the URL",
            tls.mode.name()
        )
    })?;
    if path == "system" {
        let found = rustls_native_certs::load_native_certs();
        for c in found.certs {
            let _ = store.add(c);
        }
        if store.is_empty() {
            return Err("sslrootcert=system: no system CA certificates found".into());
        }
        return Ok(store);
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("sslrootcert {path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    for c in certs {
        store
            .add(c)
            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!(
            "sslrootcert {path}: no PEM certificate in the file"
        ));
    }
    Ok(store)
}

/// The rustls client configuration of a mode.
pub fn client_config(tls: &PgTls) -> Result<ClientConfig, String> {
    let p = provider();
    let builder = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    // `require` with a CA file verifies like verify-ca (libpq does so).
    let verify = match tls.mode {
        SslMode::Require if tls.root_cert.is_some() => Some(false),
        SslMode::VerifyCa => Some(false),
        SslMode::VerifyFull => Some(true),
        _ => None,
    };
    let wants_client = match verify {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(p))),
        Some(full) => {
            let roots = Arc::new(roots(tls, default_root())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, p)
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?;
            if full {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            }
        }
    };
    match client_identity(tls)? {
        None => Ok(wants_client.with_no_client_auth()),
        Some((chain, key)) => wants_client
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("sslcert / sslkey: {e}")),
    }
}

/// The client certificate chain and key of `sslcert` / `sslkey` (both or
/// neither).
fn client_identity(
    tls: &PgTls,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, String> {
    let (cert, key) = match (&tls.client_cert, &tls.client_key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => return Err("sslcert is set but sslkey is not".into()),
        (None, Some(_)) => return Err("sslkey is set but sslcert is not".into()),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("sslcert {cert}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslcert {cert}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("sslcert {cert}: no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("sslkey {key}: {e}"))?;
    Ok(Some((chain, key)))
}

/// The hosts of a config, for messages.
fn hosts(cfg: &tokio_postgres::Config) -> String {
    let ports = cfg.get_ports();
    let h: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                tokio_postgres::config::Host::Tcp(s) => format!("{s}:{port}"),
                tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
            }
        })
        .collect();
    if h.is_empty() {
        "localhost:5432".into()
    } else {
        h.join(",")
    }
}

/// Why a connection failed, in words, and whether trying again can help.
fn cause(e: &tokio_postgres::Error, tls: &PgTls, host: &str) -> (String, bool) {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|x| x as &(dyn std::error::Error + 'static));
        for cand in [Some(s), inner].into_iter().flatten() {
            if let Some(r) = cand.downcast_ref::<rustls::Error>() {
                let ca = tls.root_cert.as_deref().unwrap_or("~/.postgresql/root.crt");
                let why = match r {
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                        "the server's certificate is not trusted: it is not signed by a CA in \
                         sslrootcert ({ca})"
                    ),
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. },
                    ) => format!(
                        "the server's certificate does not name the host `{host}` \
                         (verify-full checks the name; connect by a name the certificate \
                         holds, or use sslmode=verify-ca)"
                    ),
                    rustls::Error::InvalidCertificate(c) => {
                        format!("the server's certificate is refused: {c:?}")
                    }
                    rustls::Error::AlertReceived(a) if tls.client_cert.is_some() => format!(
                        "the server refused the client certificate (sslcert {}): {a:?}; it \
                         must be signed by a CA in the server's ssl_ca_file",
                        tls.client_cert.as_deref().unwrap_or_default()
                    ),
                    other => format!("TLS handshake failed: {other}"),
                };
                return (why, false);
            }
        }
        src = s.source();
    }
    // The error and its causes, once each.
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        let t = x.to_string();
        if !text.contains(&t) {
            text = format!("{text}: {t}");
        }
        src = x.source();
    }
    if text.contains("server does not support TLS") {
        return (
            format!(
                "the server does not support SSL (sslmode={} needs ssl=on at the server; \
                 sslmode=prefer or disable connects without TLS)",
                tls.mode.name()
            ),
            false,
        );
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return (
            format!("ERROR {code}: {}", db.message()),
            ["08", "53", "57"].iter().any(|c| code.starts_with(c)),
        );
    }
    (text, true)
}

/// Connects with the URL's TLS settings; the connection runs on its own
/// task.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, DbError> {
    let fail = |message: String, retryable: bool| DbError {
        retryable,
        message,
        code: String::new(),
    };
    let (cfg, tls) = parse(url).map_err(|e| fail(e, false))?;
    let host = hosts(&cfg);
    let where_ = format!("PostgreSQL {host} (sslmode={})", tls.mode.name());
    let config = client_config(&tls).map_err(|e| fail(format!("{where_}: {e}"), false))?;
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    match cfg.connect(connector).await {
        Ok((client, conn)) => {
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "postgres connection ended");
                }
            });
            Ok(client)
        }
        Err(e) => {
            let first = host.split(',').next().unwrap_or("");
            let name = first.rsplit_once(':').map_or(first, |(h, _)| h);
            let (why, retryable) = cause(&e, &tls, name);
            let code = e
                .as_db_error()
                .map(|d| d.code().code().to_string())
                .unwrap_or_default();
            Err(DbError {
                retryable,
                message: format!("connecting to {where_}: {why}"),
                code,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tls_settings_off() {
        let (rest, t) =
            split("postgres://u@h:5/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x")
                .unwrap();
        assert_eq!(rest, "postgres://u@h:5/db?application_name=x");
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let (rest, t) = split("postgresql://u@h/db?sslmode=require").unwrap();
        assert_eq!(
            (rest.as_str(), t.mode),
            ("postgresql://u@h/db", SslMode::Require)
        );
        let (rest, t) = split("postgres://u@h/db").unwrap();
        assert_eq!(
            (rest.as_str(), t.mode, t.root_cert),
            ("postgres://u@h/db", SslMode::Prefer, None)
        );
        let (rest, t) =
            split("host=h port=5 sslmode=verify-ca sslrootcert='/a b/ca.pem' user=u").unwrap();
        assert_eq!(rest, "host=h port=5 user=u");
        assert_eq!(t.mode, SslMode::VerifyCa);
        assert_eq!(t.root_cert.as_deref(), Some("/a b/ca.pem"));
        assert!(split("postgres://h/db?sslmode=sometimes").is_err());
        assert!(split("host=h sslmode").is_err());
        let (cfg, _) = parse("postgres://u@h:5/db?sslmode=verify-full&sslrootcert=/x").unwrap();
        assert_eq!(cfg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(hosts(&cfg), "h:5");
    }

    fn tls(mode: SslMode, root_cert: Option<&str>) -> PgTls {
        PgTls {
            mode,
            root_cert: root_cert.map(str::to_string),
            client_cert: None,
            client_key: None,
        }
    }

    #[test]
    fn missing_ca_is_named() {
        let e = roots(&tls(SslMode::VerifyFull, None), None).unwrap_err();
        assert!(e.contains("sslrootcert=/path/to/ca.pem"), "{e}");
        let e = client_config(&tls(SslMode::VerifyCa, Some("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(client_config(&tls(SslMode::Require, None)).is_ok());
    }

    #[test]
    fn client_certificate_settings() {
        let (rest, t) =
            split("postgres://u@h/db?sslmode=require&sslcert=%2Fc%2Fu.crt&sslkey=/c/u.key")
                .unwrap();
        assert_eq!(rest, "postgres://u@h/db");
        assert_eq!(t.client_cert.as_deref(), Some("/c/u.crt"));
        assert_eq!(t.client_key.as_deref(), Some("/c/u.key"));
        let (_, t) = split("host=h sslcert='/c d/u.crt' sslkey=/k").unwrap();
        assert_eq!(t.client_cert.as_deref(), Some("/c d/u.crt"));
        let mut only_cert = tls(SslMode::Require, None);
        only_cert.client_cert = Some("/c/u.crt".into());
        let e = client_config(&only_cert).unwrap_err();
        assert!(e.contains("sslkey is not"), "{e}");
        only_cert.client_key = Some("/c/u.key".into());
        let e = client_config(&only_cert).unwrap_err();
        assert!(e.contains("sslcert /c/u.crt"), "{e}");
    }
}
