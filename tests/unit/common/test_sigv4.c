/* Unit tests for common/sigv4.c: AWS's published Signature Version 4
 * examples for S3 (the "Examples" of "Signature Calculations for the
 * Authorization Header: Transferring Payload in a Single Chunk", and the
 * presigned URL of "Authenticating Requests: Using Query Parameters").
 * Their keys are AWS's documentation keys, not secrets. */
#include <string.h>

#include "sigv4.h"

static const Sigv4Keys aws = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                              "us-east-1", "s3"};
#define HOST "examplebucket.s3.amazonaws.com"
#define WHEN "20130524T000000Z"

static const char *
signature_of(const char *authorization)
{
    const char *s = strstr(authorization, "Signature=");
    g_assert_nonnull(s);
    return s + strlen("Signature=");
}

/* GET Object, bytes 0-9. */
static void
test_get_object(void)
{
    const char *h[] = {
        "Host",       HOST, "Range", "bytes=0-9", "x-amz-content-sha256", SIGV4_EMPTY_SHA256,
        "x-amz-date", WHEN, NULL};
    g_autofree char *a =
        sigv4_authorization(&aws, "GET", "/test.txt", "", h, SIGV4_EMPTY_SHA256, WHEN);
    g_assert_cmpstr(a, ==,
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                    "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                    "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

/* PUT Object: a key that needs encoding, a payload, a Date header. */
static void
test_put_object(void)
{
    const char *body = "Welcome to Amazon S3.";
    g_autofree char *hash = sigv4_sha256_hex(body, strlen(body));
    g_assert_cmpstr(hash, ==, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    g_autofree char *path = sigv4_uri_encode("/test$file.text", TRUE);
    g_assert_cmpstr(path, ==, "/test%24file.text");
    const char *h[] = {"Host",
                       HOST,
                       "Date",
                       "Fri, 24 May 2013 00:00:00 GMT",
                       "x-amz-date",
                       WHEN,
                       "x-amz-storage-class",
                       "REDUCED_REDUNDANCY",
                       "x-amz-content-sha256",
                       hash,
                       NULL};
    g_autofree char *a = sigv4_authorization(&aws, "PUT", path, "", h, hash, WHEN);
    g_assert_cmpstr(signature_of(a), ==,
                    "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    g_assert_nonnull(
        strstr(a, "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"));
}

/* GET Bucket (list objects): a canonical query. */
static void
test_list_objects(void)
{
    const char *h[] = {"Host", HOST, "x-amz-date", WHEN, "x-amz-content-sha256", SIGV4_EMPTY_SHA256,
                       NULL};
    g_autofree char *a =
        sigv4_authorization(&aws, "GET", "/", "max-keys=2&prefix=J", h, SIGV4_EMPTY_SHA256, WHEN);
    g_assert_cmpstr(signature_of(a), ==,
                    "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

/* The presigned URL of the query-parameters page. */
static void
test_presigned_url(void)
{
    g_autofree char *q = sigv4_presign_query(&aws, "GET", HOST, "/test.txt", "", WHEN, 86400);
    g_assert_cmpstr(
        q, ==,
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-"
        "east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-"
        "SignedHeaders=host&X-Amz-Signature="
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    /* One changed byte of the secret is another signature. */
    Sigv4Keys other = aws;
    other.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEz";
    g_autofree char *q2 = sigv4_presign_query(&other, "GET", HOST, "/test.txt", "", WHEN, 86400);
    g_assert_cmpstr(q, !=, q2);
}

static void
test_encode_and_date(void)
{
    g_autofree char *a = sigv4_uri_encode("a b/ü~+=", FALSE);
    g_assert_cmpstr(a, ==, "a%20b%2F%C3%BC~%2B%3D");
    g_autofree char *d = sigv4_amz_date(1369353600);
    g_assert_cmpstr(d, ==, WHEN);
}

/* Where keys of a store are, in both addressings and on AWS. */
static void
test_store_locate(void)
{
    Sigv4Store st;
    g_autofree char *h1 = NULL, *p1 = NULL, *h2 = NULL, *p2 = NULL, *h3 = NULL, *p3 = NULL;
    g_assert_true(
        sigv4_store_parse(&st, "s3://rec/a/b//", "http://127.0.0.1:9000/x", "eu-west-1", "auto"));
    g_assert_cmpstr(st.prefix, ==, "a/b/");
    g_assert_cmpstr(st.scheme, ==, "http");
    g_assert_cmpstr(st.authority, ==, "127.0.0.1:9000");
    g_assert_false(st.virtual_host); /* auto with an endpoint: path */
    sigv4_store_locate(&st, "7/teacher 1.webm", &h1, &p1);
    g_assert_cmpstr(h1, ==, "127.0.0.1:9000");
    g_assert_cmpstr(p1, ==, "/rec/a/b/7/teacher%201.webm");
    sigv4_store_clear(&st);
    g_assert_true(sigv4_store_parse(&st, "s3://rec", "", "eu-west-1", "auto"));
    g_assert_true(st.virtual_host); /* auto on AWS: virtual */
    sigv4_store_locate(&st, "7/t.webm", &h2, &p2);
    g_assert_cmpstr(h2, ==, "rec.s3.eu-west-1.amazonaws.com");
    g_assert_cmpstr(p2, ==, "/7/t.webm");
    sigv4_store_locate(&st, NULL, &h3, &p3);
    g_assert_cmpstr(p3, ==, "/");
    sigv4_store_clear(&st);
    g_assert_false(sigv4_store_parse(&st, "s3:///rec", "", "us-east-1", "auto"));
    g_assert_false(sigv4_store_parse(&st, "s3://rec", "127.0.0.1:9000", "us-east-1", "auto"));
    sigv4_store_clear(&st);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/sigv4/aws-get-object", test_get_object);
    g_test_add_func("/sigv4/aws-put-object", test_put_object);
    g_test_add_func("/sigv4/aws-list-objects", test_list_objects);
    g_test_add_func("/sigv4/aws-presigned-url", test_presigned_url);
    g_test_add_func("/sigv4/encode-and-date", test_encode_and_date);
    g_test_add_func("/sigv4/store-locate", test_store_locate);
    return g_test_run();
}
