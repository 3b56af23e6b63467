//! TLS for outbound HTTPS (KakaoPay, webhooks): rustls with the ring provider, so the build
//! needs neither OpenSSL nor cmake. reqwest finds the provider through rustls's process-wide
//! default, which must be installed before the first client is built.

pub fn init() {
    // Err means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
