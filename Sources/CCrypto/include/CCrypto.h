// CCrypto: the few cryptographic primitives uturn needs, over libcrypto,
// and the few TLS helpers Swift cannot import from libssl (see the TLS part).
//
// Why a shim: OpenSSL 3's one-shot HMAC() fetches an algorithm and allocates
// on every call. STUN integrity runs on every authenticated request, so HMAC
// here is built on the low-level SHA1/SHA256 block functions with the
// context on the caller's stack: no heap allocation, no global state.
// Every symbol is prefixed `uturn_`.
#ifndef UTURN_CCRYPTO_H
#define UTURN_CCRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UTURN_SHA1_LEN 20
#define UTURN_SHA256_LEN 32
#define UTURN_MD5_LEN 16

/// HMAC-SHA1 over the concatenation of up to three byte ranges (a range with
/// length 0 may have a NULL pointer). `out` receives 20 bytes.
/// Three ranges let STUN integrity hash a patched copy of the header followed
/// by the message body without copying the message.
void uturn_hmac_sha1(const void *key, size_t key_len,
                     const void *d1, size_t l1,
                     const void *d2, size_t l2,
                     const void *d3, size_t l3,
                     uint8_t out[UTURN_SHA1_LEN]);

/// HMAC-SHA256, same shape as `uturn_hmac_sha1`. `out` receives 32 bytes.
void uturn_hmac_sha256(const void *key, size_t key_len,
                       const void *d1, size_t l1,
                       const void *d2, size_t l2,
                       const void *d3, size_t l3,
                       uint8_t out[UTURN_SHA256_LEN]);

/// MD5 over up to three ranges (the RFC 5389 long-term key is
/// MD5(username ":" realm ":" password)).
void uturn_md5(const void *d1, size_t l1,
               const void *d2, size_t l2,
               const void *d3, size_t l3,
               uint8_t out[UTURN_MD5_LEN]);

/// SHA-256 over up to three ranges (RFC 8489 long-term key with the SHA-256
/// password algorithm, and USERHASH).
void uturn_sha256(const void *d1, size_t l1,
                  const void *d2, size_t l2,
                  const void *d3, size_t l3,
                  uint8_t out[UTURN_SHA256_LEN]);

/// Constant-time comparison: 1 when the `len` bytes are equal, else 0.
int uturn_ct_equal(const void *a, const void *b, size_t len);

/// Fills `out` with `len` cryptographically random bytes. 1 on success.
int uturn_random_bytes(void *out, size_t len);

// MARK: TLS over memory BIOs (tls.c)
//
// Relay's TLSStream drives one SSL per TCP connection through a BIO pair, so
// the engine moves ciphertext with io_uring and OpenSSL never touches a
// socket. Swift calls libssl's functions directly (SSL_new, SSL_read_ex,
// BIO_new_bio_pair, ...), which is why this header includes <openssl/ssl.h>;
// the shims below exist only for what the importer cannot reach: macros
// (SSL_CTX_set_min_proto_version, SSL_CTX_set_mode, option bits built with
// function-like macros), a C callback, and walking the error queue.

/// Applies the settings every uturn SSL_CTX gets: protocol range
/// `min_version`...`max_version` (TLS1_2_VERSION etc.; max 0 = the highest
/// the library knows); partial writes and moving write buffers (the caller
/// hands over at most one record at a time, from wherever its bytes are); no
/// renegotiation (a client could otherwise make the server redo the costly
/// part of a handshake at will); no session cache (SSL_CTX stays read-only
/// after setup, so workers never contend on its lock; TLS 1.3 tickets are
/// stateless and still resume). 1 on success, 0 with the error queue set.
int uturn_tls_ctx_configure(SSL_CTX *ctx, int min_version, int max_version);

/// Server side of ALPN for TURN (RFC 7443): selects "stun.turn" when the
/// client offers it, and otherwise carries on without ALPN.
void uturn_tls_ctx_select_stun_turn(SSL_CTX *ctx);

/// Empties this thread's OpenSSL error queue into `buf` as one line
/// ("error:...:reason (detail); error:..."), NUL-terminated and truncated to
/// `cap` bytes. Returns the length written, 0 when the queue was empty.
size_t uturn_tls_take_errors(char *buf, size_t cap);

/// Writes a self-signed certificate (PEM, to `cert_path`, mode 0644) and its
/// EC P-256 private key (PEM PKCS#8, to `key_path`, mode 0600) for
/// `common_name`, also named in subjectAltName (as an IP address when it
/// parses as one, else as a DNS name). Valid from an hour ago, for `days`
/// days (1...365). For tests and demo setups only. 1 on success, 0 with the
/// error queue set (a failed open names the path).
int uturn_tls_write_self_signed(const char *cert_path, const char *key_path,
                                const char *common_name, int days);

// MARK: DTLS over memory BIOs (dtls.c)
//
// Relay's DTLS listener gives each client session an SSL with two memory
// BIOs: one datagram at a time is written into the read BIO, and what
// OpenSSL writes (records, possibly several per call) is read from the write
// BIO and cut into datagrams at record boundaries by the caller. A per-worker
// "listening" SSL runs DTLSv1_listen, which answers a ClientHello without a
// valid cookie with a HelloVerifyRequest and keeps no state, so a spoofed
// ClientHello costs no memory; only a ClientHello with a cookie made for its
// source address turns the listening SSL into a session.

/// Bytes of a client address the cookie covers (family, IP, port).
#define UTURN_DTLS_PEER_MAX 20

/// A worker's cookie secrets (current and previous) and the address of the
/// datagram being handled. Owned by one thread.
typedef struct uturn_dtls_cookies uturn_dtls_cookies;

/// New secrets from the system's random source; NULL on failure.
uturn_dtls_cookies *uturn_dtls_cookies_new(void);
void uturn_dtls_cookies_free(uturn_dtls_cookies *c);
/// The current secret becomes the previous one and a new one is drawn:
/// cookies stay valid for one rotation period at least, two at most. 1 on success.
int uturn_dtls_cookies_rotate(uturn_dtls_cookies *c);
/// Sets the client address the next cookie is made or checked for.
void uturn_dtls_cookies_set_peer(uturn_dtls_cookies *c, const void *peer, size_t len);

/// DTLS 1.2 only, no renegotiation, no session cache, cookie exchange with
/// the callbacks above, no MTU query (memory BIOs have no path MTU). 1 on success.
int uturn_dtls_ctx_configure(SSL_CTX *ctx);

/// A server-side SSL with two memory BIOs (empty reads retry), `cookies` as
/// app data for the cookie callbacks, and records cut to `mtu` bytes.
SSL *uturn_dtls_ssl_new(SSL_CTX *ctx, uturn_dtls_cookies *cookies, long mtu);

/// DTLSv1_listen on the datagram in `ssl`'s read BIO: 1 when it carried a
/// valid cookie (the SSL then continues the handshake with SSL_do_handshake),
/// 0 when it was answered (HelloVerifyRequest in the write BIO) or dropped,
/// negative on an error.
int uturn_dtls_listen(SSL *ssl, uturn_dtls_cookies *cookies);

/// Empties both memory BIOs.
void uturn_dtls_reset_bios(SSL *ssl);

/// Empties the read BIO (what was left of a datagram that was not a whole record).
void uturn_dtls_reset_input(SSL *ssl);

/// DTLSv1_handle_timeout: retransmits the last flight when its timer ran out.
int uturn_dtls_handle_timeout(SSL *ssl);

#ifdef __cplusplus
}
#endif
#endif
