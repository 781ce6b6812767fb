//! The HTTPS certificate: a root CA, an intermediate and a leaf for
//! 127.0.0.1 and localhost, RSA 2048 like the chain AWS endpoints serve
//! (leaf and intermediate sent, root trusted by the client), so a
//! handshake costs the client what it costs against AWS: two RSA
//! signatures to verify.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_RSA_SHA256,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::Error;

pub(super) struct Made {
    pub(super) acceptor: tokio_rustls::TlsAcceptor,
    /// The root CA, PEM: what a client must trust.
    pub(super) ca_pem: String,
}

fn ca_params(name: &str) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

impl Made {
    pub(super) fn new() -> Result<Self, Error> {
        let root_key = KeyPair::generate_for(&PKCS_RSA_SHA256)?;
        let root_params = ca_params("lambda-sandbox stand-in root")?;
        let root = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, root_key);

        let intermediate_key = KeyPair::generate_for(&PKCS_RSA_SHA256)?;
        let intermediate_params = ca_params("lambda-sandbox stand-in intermediate")?;
        let intermediate = intermediate_params.signed_by(&intermediate_key, &root_issuer)?;
        let intermediate_issuer = Issuer::new(intermediate_params, intermediate_key);

        let leaf_key = KeyPair::generate_for(&PKCS_RSA_SHA256)?;
        let mut leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &intermediate_issuer)?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), intermediate.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            ca_pem: root.pem(),
        })
    }
}
