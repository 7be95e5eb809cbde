/*
 * Runs every CUnit suite of tests/unit/test_list.h (or the one named in
 * argv[1]). Exit status 0 iff every suite was linked and all tests passed.
 * Suites are weak symbols so that a partial build (UNIT_PARTIAL=1, used while
 * developing one layer) can run what it links; the full build links them all.
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define TEST_SUITE(name) int suite_##name(void) __attribute__((weak));
#include "test_list.h"
#undef TEST_SUITE

int main(int argc, char **argv)
{
	int missing = 0;
	if (hash_init_lib() < 0)
		return 1;
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
#define TEST_SUITE(name)                                                   \
	if (argc < 2 || strcmp(argv[1], #name) == 0) {                     \
		if (!suite_##name) {                                       \
			fprintf(stderr, "suite %s is not linked\n", #name); \
			missing++;                                         \
		} else if (suite_##name() != 0) {                          \
			fprintf(stderr, "cannot register suite %s\n", #name); \
			return 1;                                          \
		}                                                          \
	}
#include "test_list.h"
#undef TEST_SUITE
	CU_basic_set_mode(CU_BRM_NORMAL);
	CU_basic_run_tests();
	unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	unsigned run = CU_get_number_of_tests_run();
	CU_cleanup_registry();
	if (missing && !getenv("UNIT_PARTIAL"))
		return 1;
	return (failed == 0 && run > 0) ? 0 : 1;
}
