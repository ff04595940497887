// The TLS helpers Swift cannot reach through the importer; see the TLS part
// of include/CCrypto.h. Everything else about TLS is called from Swift.
#include "CCrypto.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int uturn_tls_ctx_configure(SSL_CTX *ctx, int min_version, int max_version) {
    if (!SSL_CTX_set_min_proto_version(ctx, min_version)) return 0;
    if (!SSL_CTX_set_max_proto_version(ctx, max_version)) return 0;
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return 1;
}

// RFC 7443 asks TURN servers to select "stun.turn" when offered. When a
// client offers ALPN without it, RFC 7301 §3.2 would allow a fatal
// no_application_protocol alert, but this port speaks only TURN whatever the
// client names, and clients written before RFC 7443 or built on generic TLS
// stacks may offer other names; answering without ALPN (NOACK) lets them in,
// and a client that cares sees that nothing was selected.
static int select_stun_turn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                            const unsigned char *in, unsigned int inlen, void *arg) {
    static const char name[] = "stun.turn";
    const unsigned int name_len = sizeof name - 1;
    (void)ssl;
    (void)arg;
    // `in` is the wire list: length-prefixed names. OpenSSL has validated it;
    // the bounds check below only keeps this loop safe on its own.
    for (unsigned int i = 0; i < inlen;) {
        unsigned int len = in[i];
        if (len > inlen - i - 1) break;
        if (len == name_len && memcmp(in + i + 1, name, name_len) == 0) {
            *out = in + i + 1;  // must point into `in` (or static storage)
            *outlen = (unsigned char)len;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

void uturn_tls_ctx_select_stun_turn(SSL_CTX *ctx) {
    SSL_CTX_set_alpn_select_cb(ctx, select_stun_turn, NULL);
}

size_t uturn_tls_take_errors(char *buf, size_t cap) {
    size_t used = 0;
    const char *data = NULL;
    int flags = 0;
    unsigned long e;
    if (cap > 0) buf[0] = '\0';
    // Keep draining after the buffer is full: the queue must end up empty so
    // the next SSL_get_error on this thread is not misled by stale entries.
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (used + 1 >= cap) continue;
        char line[256];
        ERR_error_string_n(e, line, sizeof line);
        const int detail = (flags & ERR_TXT_STRING) && data != NULL && data[0] != '\0';
        int n = snprintf(buf + used, cap - used, "%s%s%s%s%s", used ? "; " : "", line,
                         detail ? " (" : "", detail ? data : "", detail ? ")" : "");
        if (n < 0) break;
        used += (size_t)n < cap - used ? (size_t)n : cap - used - 1;
    }
    return used;
}

// Opens `path` for writing with `mode`, also tightening the mode of a file
// that already existed (O_CREAT's mode applies only to new files).
static FILE *open_for_writing(const char *path, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || fchmod(fd, mode) != 0) {
        ERR_raise_data(ERR_LIB_SYS, errno, "open %s", path);
        if (fd >= 0) close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        ERR_raise_data(ERR_LIB_SYS, errno, "fdopen %s", path);
        close(fd);
    }
    return f;
}

static int close_written(FILE *f, const char *path) {
    if (fclose(f) != 0) {
        ERR_raise_data(ERR_LIB_SYS, errno, "write %s", path);
        return 0;
    }
    return 1;
}

// subjectAltName with one entry: clients that verify names look here, not at CN.
static int add_subject_alt_name(X509 *x, const char *common_name) {
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    GENERAL_NAME *name = GENERAL_NAME_new();
    int ok = 0;
    if (names == NULL || name == NULL) goto done;
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(common_name);
    if (ip != NULL) {
        GENERAL_NAME_set0_value(name, GEN_IPADD, ip);
    } else {
        ERR_clear_error();  // a2i_IPADDRESS leaves an entry for "not an address"
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        if (dns == NULL || !ASN1_STRING_set(dns, common_name, -1)) {
            ASN1_IA5STRING_free(dns);
            goto done;
        }
        GENERAL_NAME_set0_value(name, GEN_DNS, dns);
    }
    if (!sk_GENERAL_NAME_push(names, name)) goto done;
    name = NULL;  // owned by `names` now
    ok = X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1;
done:
    GENERAL_NAME_free(name);
    GENERAL_NAMES_free(names);
    return ok;
}

int uturn_tls_write_self_signed(const char *cert_path, const char *key_path,
                                const char *common_name, int days) {
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    BIGNUM *serial = NULL;
    FILE *f = NULL;
    int ok = 0;

    if (days < 1 || days > 365 || common_name[0] == '\0') {
        ERR_raise_data(ERR_LIB_X509, ERR_R_PASSED_INVALID_ARGUMENT,
                       "validity must be 1...365 days and the common name non-empty");
        return 0;
    }
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    x = X509_new();
    serial = BN_new();
    if (key == NULL || x == NULL || serial == NULL) goto done;

    X509_NAME *subject = X509_get_subject_name(x);
    // A random 127-bit serial: positive, and distinct from earlier runs so
    // clients that cache certificates by issuer and serial are not confused.
    if (!X509_set_version(x, X509_VERSION_3) || !BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) == NULL ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||  // tolerate a client clock an hour behind
        X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) == NULL || !X509_set_pubkey(x, key) ||
        !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)common_name, -1, -1, 0) ||
        !X509_set_issuer_name(x, subject) || !add_subject_alt_name(x, common_name) ||
        X509_sign(x, key, EVP_sha256()) == 0)
        goto done;

    if ((f = open_for_writing(key_path, 0600)) == NULL) goto done;
    int wrote = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    if (!close_written(f, key_path) || !wrote) goto done;
    if ((f = open_for_writing(cert_path, 0644)) == NULL) goto done;
    wrote = PEM_write_X509(f, x);
    if (!close_written(f, cert_path) || !wrote) goto done;
    ok = 1;
done:
    BN_free(serial);
    X509_free(x);
    EVP_PKEY_free(key);
    return ok;
}
