//! Mutual TLS for MARS (WIRE.md, "Transport"): every node presents a
//! self-signed certificate made from its Ed25519 mesh key, and a peer's mesh
//! identity is the key in that certificate's *parsed* SubjectPublicKeyInfo —
//! the key that signed the handshake.
//!
//! There is no certificate authority: the verifiers accept any well-formed
//! certificate whose key is Ed25519, and still verify the TLS 1.3 handshake
//! signature with that key, so whoever completes the handshake holds the
//! private key of the identity we read. Nothing is ever found by searching
//! the DER for a byte pattern (the reference does; a certificate that carries
//! another key's SPKI bytes in an earlier field impersonates that key there).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::{Identity, Keypair};

/// The ALPN protocol id of MARS v0x01.
pub const ALPN: &[u8] = b"mesh/0";

/// The server name a client puts in its ClientHello. Nobody checks it: the
/// peer is authenticated by its key, not by a name.
pub const SERVER_NAME: &str = "mesh.local";

/// PKCS#8 v1 wrapping of a raw Ed25519 secret (RFC 8410 §7): this prefix,
/// then the 32 secret bytes.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The DER of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4) up to the key:
/// `SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) }`.
/// Parameters must be absent, so the whole SPKI is exactly 44 bytes.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a certificate is not a MARS node certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The DER is not an X.509 certificate webpki can parse.
    #[error("certificate does not parse: {0}")]
    Unparsable(String),
    /// The certificate's key is not Ed25519 (the SPKI is shown in hex, up to 64 bytes).
    #[error("certificate key is not Ed25519 (SPKI {spki_prefix}…)")]
    NotEd25519 {
        /// The start of the SPKI, hex.
        spki_prefix: String,
    },
}

/// Why the TLS configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSetupError {
    /// rcgen refused the key or the certificate.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration failed: {0}")]
    Config(String),
}

/// The mesh identity a certificate authenticates: the Ed25519 key in its
/// parsed SubjectPublicKeyInfo.
pub fn identity_from_certificate(der: &[u8]) -> Result<Identity, CertificateError> {
    let der = CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| CertificateError::Unparsable(format!("{e:?}")))?;
    let spki = cert.subject_public_key_info();
    let spki = spki.as_ref();
    match spki.strip_prefix(&SPKI_ED25519_PREFIX[..]) {
        Some(key) if key.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(key);
            Ok(Identity::from_ed25519_bytes(k))
        }
        _ => Err(CertificateError::NotEd25519 {
            spki_prefix: spki.iter().take(64).map(|b| format!("{b:02x}")).collect(),
        }),
    }
}

/// A self-signed certificate for `key` (subject CN = its DID) and the key in
/// PKCS#8 form, as rustls wants them.
pub fn self_signed_certificate(
    key: &Keypair,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsSetupError> {
    let mut pkcs8 = Vec::with_capacity(48);
    pkcs8.extend_from_slice(&PKCS8_ED25519_PREFIX);
    pkcs8.extend_from_slice(&key.secret_bytes());
    let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8);
    let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| TlsSetupError::Certificate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, key.identity().did());
    let cert = params
        .self_signed(&signer)
        .map_err(|e| TlsSetupError::Certificate(e.to_string()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// Only Ed25519 handshake signatures are accepted.
static ED25519_ONLY: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[webpki::ring::ED25519],
    mapping: &[(SignatureScheme::ED25519, &[webpki::ring::ED25519])],
};

/// Accepts any certificate whose key is Ed25519 and verifies the handshake
/// signature with it; serves as both client and server verifier.
#[derive(Debug)]
pub(super) struct MeshVerifier;

fn check_end_entity(cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    identity_from_certificate(cert.as_ref())
        .map(|_| ())
        .map_err(|e| match e {
            CertificateError::Unparsable(_) => {
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
            }
            CertificateError::NotEd25519 { .. } => rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(e))),
            ),
        })
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("MARS uses TLS 1.3 only".to_owned())
}

impl ServerCertVerifier for MeshVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_end_entity(end_entity).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &ED25519_ONLY)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for MeshVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_end_entity(end_entity).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &ED25519_ONLY)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls client configuration: TLS 1.3, ALPN `mesh/0`, our certificate
/// as client certificate, the mesh verifier for the server's.
pub fn client_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MeshVerifier))
        .with_client_auth_cert(vec![cert], key)
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// rustls server configuration: TLS 1.3, ALPN `mesh/0`, a client
/// certificate required and checked by the mesh verifier.
pub fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsSetupError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(MeshVerifier))
        .with_single_cert(vec![cert], key)
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}
