/*
 * The one list of unit-test suites. Each entry names a function
 * `int suite_NAME(void)` defined in tests/unit/NAME_test.c that registers its
 * CUnit suite and returns 0 (or a CUnit error). Add a line when you add a
 * module.
 */
TEST_SUITE(buf)
TEST_SUITE(path)
TEST_SUITE(hash)
TEST_SUITE(proto)
TEST_SUITE(chunker)
TEST_SUITE(rsig)
TEST_SUITE(frame)
TEST_SUITE(bundle)
TEST_SUITE(compress)
TEST_SUITE(token)
TEST_SUITE(fuse_queue)
TEST_SUITE(fuse_links)
TEST_SUITE(fuse_ofile)
TEST_SUITE(fuse_misc)
TEST_SUITE(fuse_mline)
TEST_SUITE(fuse_patch)
TEST_SUITE(server_apply)
TEST_SUITE(server_store)
TEST_SUITE(server_state)
TEST_SUITE(server_manifest)
TEST_SUITE(server_auth)
TEST_SUITE(server_metrics)
TEST_SUITE(poll_scan)
