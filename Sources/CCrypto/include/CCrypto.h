// CCrypto: the few cryptographic primitives uturn needs, over libcrypto.
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

#ifdef __cplusplus
}
#endif
#endif
