// See include/CCrypto.h for why this shim exists.
// The low-level SHA/MD5 interfaces are deprecated in OpenSSL 3 but remain
// supported and, unlike EVP, never allocate.
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "CCrypto.h"

#include <openssl/crypto.h>
#include <openssl/md5.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>

#define HMAC_BLOCK 64  // SHA-1 and SHA-256 both use 64-byte blocks

// One macro body instantiated for both hashes keeps the two HMACs identical in
// shape; only the context type, digest length and function prefix differ.
#define DEFINE_HMAC(NAME, CTX, INIT, UPDATE, FINAL, DLEN)                       \
    void NAME(const void *key, size_t key_len, const void *d1, size_t l1,      \
              const void *d2, size_t l2, const void *d3, size_t l3,            \
              uint8_t out[DLEN]) {                                             \
        uint8_t k[HMAC_BLOCK];                                                 \
        uint8_t pad[HMAC_BLOCK];                                               \
        uint8_t inner[DLEN];                                                   \
        CTX ctx;                                                               \
        memset(k, 0, sizeof k);                                                \
        if (key_len > HMAC_BLOCK) {                                            \
            INIT(&ctx);                                                        \
            UPDATE(&ctx, key, key_len);                                        \
            FINAL(k, &ctx);                                                    \
        } else if (key_len > 0) {                                              \
            memcpy(k, key, key_len);                                           \
        }                                                                      \
        for (int i = 0; i < HMAC_BLOCK; i++) pad[i] = k[i] ^ 0x36;             \
        INIT(&ctx);                                                            \
        UPDATE(&ctx, pad, HMAC_BLOCK);                                         \
        if (l1) UPDATE(&ctx, d1, l1);                                          \
        if (l2) UPDATE(&ctx, d2, l2);                                          \
        if (l3) UPDATE(&ctx, d3, l3);                                          \
        FINAL(inner, &ctx);                                                    \
        for (int i = 0; i < HMAC_BLOCK; i++) pad[i] = k[i] ^ 0x5c;             \
        INIT(&ctx);                                                            \
        UPDATE(&ctx, pad, HMAC_BLOCK);                                         \
        UPDATE(&ctx, inner, DLEN);                                             \
        FINAL(out, &ctx);                                                      \
        OPENSSL_cleanse(k, sizeof k);                                          \
        OPENSSL_cleanse(pad, sizeof pad);                                      \
    }

DEFINE_HMAC(uturn_hmac_sha1, SHA_CTX, SHA1_Init, SHA1_Update, SHA1_Final, UTURN_SHA1_LEN)
DEFINE_HMAC(uturn_hmac_sha256, SHA256_CTX, SHA256_Init, SHA256_Update, SHA256_Final, UTURN_SHA256_LEN)

void uturn_md5(const void *d1, size_t l1, const void *d2, size_t l2,
               const void *d3, size_t l3, uint8_t out[UTURN_MD5_LEN]) {
    MD5_CTX ctx;
    MD5_Init(&ctx);
    if (l1) MD5_Update(&ctx, d1, l1);
    if (l2) MD5_Update(&ctx, d2, l2);
    if (l3) MD5_Update(&ctx, d3, l3);
    MD5_Final(out, &ctx);
}

void uturn_sha256(const void *d1, size_t l1, const void *d2, size_t l2,
                  const void *d3, size_t l3, uint8_t out[UTURN_SHA256_LEN]) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    if (l1) SHA256_Update(&ctx, d1, l1);
    if (l2) SHA256_Update(&ctx, d2, l2);
    if (l3) SHA256_Update(&ctx, d3, l3);
    SHA256_Final(out, &ctx);
}

int uturn_ct_equal(const void *a, const void *b, size_t len) {
    return CRYPTO_memcmp(a, b, len) == 0;
}

int uturn_random_bytes(void *out, size_t len) {
    return RAND_bytes(out, (int)len) == 1;
}
