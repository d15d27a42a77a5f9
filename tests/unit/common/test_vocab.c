/* Unit tests for common/vocab.c: names both ways, settled states, paths. */
#include <glib.h>

#include "vocab.h"

static void
test_roles(void)
{
    for (ConsultdRole r = CONSULTD_ROLE_TEACHER; r <= CONSULTD_ROLE_COMBINED; r++) {
        ConsultdRole back = CONSULTD_N_ROLES + 7;
        g_assert_true(consultd_role_parse(consultd_role_name(r), TRUE, &back));
        g_assert_cmpint(back, ==, r);
    }
    ConsultdRole r = CONSULTD_ROLE_TEACHER;
    g_assert_false(consultd_role_parse("combined", FALSE, &r)); /* not a participant */
    g_assert_false(consultd_role_parse("admin", TRUE, &r));
    g_assert_false(consultd_role_parse(NULL, TRUE, &r));
    g_assert_cmpint(r, ==, CONSULTD_ROLE_TEACHER);
    g_assert_cmpstr(consultd_role_name(CONSULTD_ROLE_STUDENT), ==, "student");
    g_assert_cmpstr(consultd_role_name((ConsultdRole)99), ==, "unknown");
}

static void
test_states(void)
{
    for (ConsultdRecState s = 0; s < CONSULTD_N_REC_STATES; s++) {
        ConsultdRecState back = CONSULTD_N_REC_STATES;
        g_assert_true(consultd_rec_state_parse(consultd_rec_state_name(s), &back));
        g_assert_cmpint(back, ==, s);
    }
    g_assert_false(consultd_rec_state_settled(CONSULTD_REC_RECORDING));
    g_assert_false(consultd_rec_state_settled(CONSULTD_REC_PROCESSING));
    g_assert_true(consultd_rec_state_settled(CONSULTD_REC_READY));
    g_assert_true(consultd_rec_state_settled(CONSULTD_REC_FAILED));
    g_assert_true(consultd_rec_state_settled(CONSULTD_REC_EMPTY));
    g_assert_true(consultd_rec_state_settled(CONSULTD_REC_DELETED));
    ConsultdRecState s;
    g_assert_false(consultd_rec_state_parse("Ready", &s));
}

static void
test_paths(void)
{
    g_autofree char *t1 = consultd_recording_file(CONSULTD_ROLE_TEACHER, CONSULTD_STREAM_CAMERA, 1);
    g_autofree char *s3 = consultd_recording_file(CONSULTD_ROLE_STUDENT, CONSULTD_STREAM_CAMERA, 3);
    g_autofree char *c = consultd_recording_file(CONSULTD_ROLE_COMBINED, CONSULTD_STREAM_SCREEN, 2);
    g_autofree char *ts1 =
        consultd_recording_file(CONSULTD_ROLE_TEACHER, CONSULTD_STREAM_SCREEN, 1);
    g_autofree char *ss2 =
        consultd_recording_file(CONSULTD_ROLE_STUDENT, CONSULTD_STREAM_SCREEN, 2);
    g_assert_cmpstr(t1, ==, "teacher.webm");
    g_assert_cmpstr(s3, ==, "student-3.webm");
    g_assert_cmpstr(c, ==, "combined.webm");
    g_assert_cmpstr(ts1, ==, "teacher-screen.webm");
    g_assert_cmpstr(ss2, ==, "student-screen-2.webm");
    g_assert_cmpint(consultd_recording_stream(ts1), ==, CONSULTD_STREAM_SCREEN);
    g_assert_cmpint(consultd_recording_stream(ss2), ==, CONSULTD_STREAM_SCREEN);
    g_assert_cmpint(consultd_recording_stream(s3), ==, CONSULTD_STREAM_CAMERA);
    g_assert_cmpint(consultd_recording_stream(c), ==, CONSULTD_STREAM_CAMERA);
    ConsultdStream st = CONSULTD_STREAM_CAMERA;
    g_assert_true(consultd_stream_parse("screen", &st));
    g_assert_cmpint(st, ==, CONSULTD_STREAM_SCREEN);
    g_assert_false(consultd_stream_parse("Screen", &st));
    g_assert_cmpstr(consultd_stream_name(CONSULTD_STREAM_CAMERA), ==, "camera");
    g_autofree char *dir = consultd_recordings_dir("/var/lib/consultd");
    g_assert_cmpstr(dir, ==, "/var/lib/consultd/recordings");
    g_autofree char *p = consultd_recording_path(dir, 42, t1);
    g_assert_cmpstr(p, ==, "/var/lib/consultd/recordings/42/teacher.webm");
    g_autofree char *d = consultd_recording_path(dir, 42, NULL);
    g_assert_cmpstr(d, ==, "/var/lib/consultd/recordings/42");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vocab/roles", test_roles);
    g_test_add_func("/vocab/states", test_states);
    g_test_add_func("/vocab/paths", test_paths);
    return g_test_run();
}
