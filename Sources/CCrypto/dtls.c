// DTLS helpers for Relay's DTLS listener (see the DTLS part of
// include/CCrypto.h): what Swift cannot reach through the importer (macros,
// C callbacks) and the stateless cookie check.
#include "CCrypto.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <string.h>

// A cookie is HMAC-SHA256(secret, client address) cut to this many bytes:
// enough that guessing one for an address the client does not hold is
// hopeless, and short enough to keep the ClientHello small.
#define COOKIE_LEN 16

struct uturn_dtls_cookies {
    uint8_t current[32];
    uint8_t previous[32];
    // The client address of the datagram being handled (set before every
    // OpenSSL call that may make or check a cookie); at most family + 16 + 2.
    uint8_t peer[UTURN_DTLS_PEER_MAX];
    size_t peer_len;
    // Where DTLSv1_listen writes the sender's address (unused with memory
    // BIOs, but required): allocated once, not per ClientHello.
    BIO_ADDR *listen_addr;
};

void uturn_dtls_cookies_free(uturn_dtls_cookies *c) {
    if (c == NULL) return;
    BIO_ADDR_free(c->listen_addr);
    OPENSSL_clear_free(c, sizeof *c);
}

uturn_dtls_cookies *uturn_dtls_cookies_new(void) {
    uturn_dtls_cookies *c = OPENSSL_zalloc(sizeof *c);
    if (c == NULL) return NULL;
    c->listen_addr = BIO_ADDR_new();
    if (c->listen_addr == NULL || !uturn_random_bytes(c->current, sizeof c->current)) {
        uturn_dtls_cookies_free(c);
        return NULL;
    }
    memcpy(c->previous, c->current, sizeof c->current);
    return c;
}

int uturn_dtls_cookies_rotate(uturn_dtls_cookies *c) {
    uint8_t next[32];
    if (!uturn_random_bytes(next, sizeof next)) return 0;
    memcpy(c->previous, c->current, sizeof c->current);
    memcpy(c->current, next, sizeof next);
    OPENSSL_cleanse(next, sizeof next);
    return 1;
}

void uturn_dtls_cookies_set_peer(uturn_dtls_cookies *c, const void *peer, size_t len) {
    if (len > sizeof c->peer) len = sizeof c->peer;
    memcpy(c->peer, peer, len);
    c->peer_len = len;
}

static void cookie_for(const uturn_dtls_cookies *c, const uint8_t secret[32], uint8_t out[UTURN_SHA256_LEN]) {
    uturn_hmac_sha256(secret, 32, c->peer, c->peer_len, NULL, 0, NULL, 0, out);
}

// The SSL's app data is the worker's uturn_dtls_cookies (uturn_dtls_ssl_new).
static int generate_cookie(SSL *ssl, unsigned char *cookie, unsigned int *cookie_len) {
    const uturn_dtls_cookies *c = SSL_get_app_data(ssl);
    uint8_t mac[UTURN_SHA256_LEN];
    if (c == NULL) return 0;
    cookie_for(c, c->current, mac);
    memcpy(cookie, mac, COOKIE_LEN);
    *cookie_len = COOKIE_LEN;
    return 1;
}

// Accepts a cookie made with the current or the previous secret, so a
// rotation does not fail a handshake that straddles it.
static int verify_cookie(SSL *ssl, const unsigned char *cookie, unsigned int cookie_len) {
    const uturn_dtls_cookies *c = SSL_get_app_data(ssl);
    uint8_t mac[UTURN_SHA256_LEN];
    if (c == NULL || cookie_len != COOKIE_LEN) return 0;
    cookie_for(c, c->current, mac);
    if (uturn_ct_equal(mac, cookie, COOKIE_LEN)) return 1;
    cookie_for(c, c->previous, mac);
    return uturn_ct_equal(mac, cookie, COOKIE_LEN);
}

int uturn_dtls_ctx_configure(SSL_CTX *ctx) {
    if (!SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION)) return 0;
    if (!SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION)) return 0;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_COOKIE_EXCHANGE | SSL_OP_NO_QUERY_MTU);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_cookie_generate_cb(ctx, generate_cookie);
    SSL_CTX_set_cookie_verify_cb(ctx, verify_cookie);
    return 1;
}

SSL *uturn_dtls_ssl_new(SSL_CTX *ctx, uturn_dtls_cookies *cookies, long mtu) {
    SSL *ssl = SSL_new(ctx);
    BIO *in = BIO_new(BIO_s_mem());
    BIO *out = BIO_new(BIO_s_mem());
    if (ssl == NULL || in == NULL || out == NULL) {
        SSL_free(ssl);
        BIO_free(in);
        BIO_free(out);
        return NULL;
    }
    // An empty memory BIO reads as "retry later", not as end of file.
    BIO_set_mem_eof_return(in, -1);
    BIO_set_mem_eof_return(out, -1);
    SSL_set_bio(ssl, in, out);
    SSL_set_app_data(ssl, cookies);
    SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
    SSL_set_mtu(ssl, mtu);
    SSL_set_accept_state(ssl);
    return ssl;
}

int uturn_dtls_listen(SSL *ssl, uturn_dtls_cookies *cookies) { return DTLSv1_listen(ssl, cookies->listen_addr); }

void uturn_dtls_reset_bios(SSL *ssl) {
    (void)BIO_reset(SSL_get_rbio(ssl));
    (void)BIO_reset(SSL_get_wbio(ssl));
}

void uturn_dtls_reset_input(SSL *ssl) { (void)BIO_reset(SSL_get_rbio(ssl)); }

int uturn_dtls_handle_timeout(SSL *ssl) { return (int)DTLSv1_handle_timeout(ssl); }
