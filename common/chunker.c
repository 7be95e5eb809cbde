#define _GNU_SOURCE
#include "chunker.h"

#include <errno.h>

/*
 * The Gear table: 256 constants from splitmix64 seeded with
 * 0x6d6972726f726673 ("mirrorfs"), i.e. for i = 1..256:
 *   s = seed + i * 0x9e3779b97f4a7c15;
 *   z = (s ^ (s >> 30)) * 0xbf58476d1ce4e5b9;
 *   z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
 *   gear[i - 1] = z ^ (z >> 31);
 * It is written out as literals on purpose: chunk boundaries, and so chunk
 * ids and deduplication between clients and versions, depend on every bit of
 * it. Never change it (tests/unit/chunker_test.c pins the boundaries).
 */
static const uint64_t chunker__gear[256] = {
	0xa780c33dd88e5efcull, 0x1588b5b9f5080d44ull, 0xa678a1f29c2d6cabull,
	0x9bd7e0191bc40cb6ull, 0xad7dd7432ae7e04bull, 0x1f79314e063548acull,
	0xbe8b34ec9ef81d53ull, 0x98e0aee3d3965b07ull, 0x2ea182c7e763bbb0ull,
	0x75f100d1f4bb2baeull, 0x638dcdd9e9cac21full, 0x9897460d3bc8787dull,
	0x8f483d3ea33fb8e9ull, 0x0bf12e674fb219d7ull, 0x40769389fbaf2914ull,
	0x9750d960663bcbb1ull, 0x629c3d1ec1d5c40dull, 0xbd45ce997126e80bull,
	0x65986a89dfe4051bull, 0xb0681a5531409b67ull, 0xfe4e0b663f91276dull,
	0x26dfaffc6aace8afull, 0x7ab42ece3b4175ccull, 0xb0a4ef297c7448d4ull,
	0x1907c1296c162bddull, 0x416ee73ad01a1329ull, 0x0625157429803af4ull,
	0x01d9b3bdc231adf0ull, 0xaf0fa3266c6ccf88ull, 0x091a118453ea822eull,
	0xa3e8041f3c6fd855ull, 0xf14ff5a41d173d0aull, 0x959a697ab7dc4fd9ull,
	0x8cc28c182d6d865aull, 0x20a0f480d43b5374ull, 0x63a128f1e5975e3full,
	0x833eda5c8abba09eull, 0x8e845e74dee74b3eull, 0xf881166b1be6b4c4ull,
	0xdedce04f5d7356e5ull, 0xad80a78258876581ull, 0x3c4dbee96734c5efull,
	0xc558cea547994afaull, 0xbb33e9981f3ff6afull, 0x2ce18e1dc4c52d65ull,
	0x62bd8be9bcabcebfull, 0xc439bdc67722a725ull, 0x3f035d2a1020d92full,
	0x51e1e177dd276273ull, 0xe6385b44881039cbull, 0xd7623ed551ed3c52ull,
	0xe6d9edaf7b2d875full, 0x909d2110d089c5aeull, 0xdbd1901add187474ull,
	0x2610ee696dc79a9dull, 0x1ef1aa9845cb68a0ull, 0x496af97a6efd35c7ull,
	0x4ba77d083bad5f83ull, 0xc1c2c145c1efab9cull, 0xbc3ad4ac057827cbull,
	0xb73ad35bd386246aull, 0x11851e6e81b5d1a8ull, 0x118607860071a490ull,
	0x4b95cbe243287310ull, 0x2001ff6583eddb7full, 0xda391471d3c4ee54ull,
	0xcd961ea934b87bd9ull, 0xfd31aeb1acd4c7f9ull, 0x037040b4e49fc2f1ull,
	0xd9722e1af4a574e6ull, 0xf8d87d38274054e3ull, 0xbd2c10e3f3a9ce2aull,
	0x6ac063134865af5bull, 0xcf477af14d93bd55ull, 0x9140a47b4c3aca98ull,
	0xaed5ad2cda13e31aull, 0x42549af09339e8fdull, 0xa318a7848c3115eeull,
	0x54008a49d19611c8ull, 0x9dec3baf0f980253ull, 0x8c02b6e00382f893ull,
	0x92890236663679c3ull, 0x6f00ed26b9b9dbeeull, 0x763fceb37b8890dfull,
	0xb89098ac6a9d1442ull, 0x427140e5cb303f54ull, 0x57eed3c87573102full,
	0xc8f9951c909f8ff3ull, 0xe3beebe4c67ca429ull, 0x77b66cf090ee41baull,
	0x3af869c339c69c41ull, 0x1dddb57e130b935dull, 0xb92d6529258ce14dull,
	0x36db2d0d8c32e7d7ull, 0x0e8b1fd512ac905bull, 0x8844e7322970c44aull,
	0x9037a7b281a00f42ull, 0x58c0e8682fc2c8aeull, 0xf55046c9d14897a8ull,
	0x7ca060aeca6d13e4ull, 0xcf7c1782f4bcbeddull, 0xe162a8819d07feaaull,
	0x45a2b7d43818aab0ull, 0x1a87ee5eefd51788ull, 0x9a872d96f0124ef7ull,
	0x8299c8a01239a16eull, 0xb738ef88da0ddb19ull, 0xab0287f2b9c3313cull,
	0x65dba52433c70b63ull, 0x8c8771d7186334e5ull, 0x11d40c5bc228dbfcull,
	0x11adfd7a4777b1b1ull, 0xa1a014969e901c95ull, 0x9b8c8092a0ed14a0ull,
	0x1ed92e6664d82631ull, 0xfed2e51c43e46367ull, 0x0a90a890ab647d93ull,
	0x579b61f6a1093745ull, 0x56c6bee78130e364ull, 0xe85819106ca82cabull,
	0x1e17e2ea525d86bfull, 0x89767d359e976034ull, 0x631634e24e48206bull,
	0x6d6743b03be1e8b4ull, 0x80005efc0cc63288ull, 0x9111728d5e83195aull,
	0xb6249da90b09a129ull, 0xcf1a3eaa629739bcull, 0x0c3ef165df51a6c7ull,
	0x2f31787a26b99321ull, 0x109e131bee738e69ull, 0xdfa6c649fc75b209ull,
	0xe3bd4d8a77e75f54ull, 0x744f7c199c73af89ull, 0xcfdf8b490b474f25ull,
	0x197a348e60b4d8a0ull, 0x4630dfc5ee9d48fbull, 0x55de1dd6f4bfc7fbull,
	0x308ee5f0bf449149ull, 0x16d2714eb35e3a38ull, 0xb509c9b683f0bde8ull,
	0x47b78e83c62c6070ull, 0x8290cbf3cfeaa432ull, 0xdb01969565cb730eull,
	0xe4852e4bca9eaf81ull, 0x5b929c2437429548ull, 0x81ca508b07ee4756ull,
	0x34e9afc2bb3521d8ull, 0x39f68e4b478842d8ull, 0x006d7492fea67e2full,
	0xd2a0e89bf55748faull, 0x7641d568cb79dba4ull, 0xfc3fe3f6efbe552cull,
	0x70da1e599c4cd6ffull, 0xd2cee62bdc47a9a8ull, 0xf7c758d57a0dbd5full,
	0x6a34ded0cba0e367ull, 0x86ce30ecab1c5738ull, 0xdc320f84701234b6ull,
	0x53ac325a9e5ad1c2ull, 0x028ed56a8c526b3cull, 0xf72330cdcfd007f5ull,
	0x7caf0a1a53d43a79ull, 0x103429a89e7509ffull, 0xa5267e0ab6cb64d4ull,
	0xb3aadca22fe93fe3ull, 0x1a733f6d775959bbull, 0x7de72f3b406bc68aull,
	0xcf44ac22f8ee4d43ull, 0x9ca7e4b4112a3a7cull, 0x1e8502739ac7f64cull,
	0x185f5f25308f406aull, 0xda79459683304a6dull, 0x78812af1e0409acfull,
	0x55bf854c89b20010ull, 0x1104accaced4fdafull, 0x672ae09918e00317ull,
	0x704cce50c593095full, 0x37853962094a363eull, 0x3de1abeb7d142cb5ull,
	0xe56fad43a53ffd34ull, 0x89fdc6fb4c18897full, 0xc921230ace4be0b5ull,
	0xc4b6bf6d96378363ull, 0xf4f6eb1ba795d53aull, 0x7333dddab7c2eb8eull,
	0xb76a0287bc0dadf8ull, 0xeb454eba606293ecull, 0x7d3442a65753f984ull,
	0x8c7c7022a703cdddull, 0x5c45c3567aecc9f2ull, 0x64189f497b528ba3ull,
	0xacb00f34c769748cull, 0xcfa5cd1285158ef0ull, 0x110818133499feceull,
	0x0c6360a44eebbd21ull, 0xd3e44e926d94a192ull, 0xd23f928591653f2cull,
	0x353fcbc0296f3354ull, 0x45b52d2ace9cf25bull, 0x8819534ecc5bd1edull,
	0xc85bc854648bca09ull, 0xc328066adf1c630eull, 0x54f139b2ac9cc0e6ull,
	0xfdf28ce5edf8f659ull, 0xd9b9fae654ce380full, 0x14679dc92428c239ull,
	0xa4abdd66bae72570ull, 0xcf72f792ee156138ull, 0xe5d4299d7f555ef5ull,
	0xc5809b14a32d586eull, 0x45dd91ed25d9d662ull, 0x5d89a693f70939f6ull,
	0xb60ec5de7323de2dull, 0xdfe5e96091261cfeull, 0x05138d42462b9f1dull,
	0x43ab858611b5b905ull, 0xc042a1ec74b62029ull, 0x15a3e012e0b77f8aull,
	0x00f7f319aca34e5dull, 0x6baeaeadcc269eb3ull, 0xa0195b93974d5ad5ull,
	0x2a680967a45340cfull, 0x86e1c2c2aaa170a6ull, 0xe3621e3c1cd780fbull,
	0x544af4f9c8a0219full, 0x200017955a817635ull, 0x2901d959429a4b58ull,
	0xf62eda5277454b1eull, 0x6261adb361040858ull, 0x9f1081d2c29d4e67ull,
	0x1f0f04d83e456923ull, 0x862720cfffe778d7ull, 0xf815ab9e19ed0cc5ull,
	0x11e8cf606bd2d3f3ull, 0x9c6deff71c9efdd5ull, 0x6f79ad382b1bdbe9ull,
	0x6fafe41e1ac21983ull, 0xf9b31ff5f95bba62ull, 0x5e4dc85f8eb3eda9ull,
	0xa5c6d9b56bbc6b19ull, 0xcf9fd5a1cb16115full, 0x6efeec467b224aa7ull,
	0x194361c0b31747dbull, 0x13fd0832240de34full, 0x2545485f4b31c101ull,
	0xd4ff63794bd791edull, 0x8d71f3a91cef5029ull, 0x170c9b4969d41b9dull,
	0x476e588a5bc42ce5ull, 0x1735be75d3ff2d56ull, 0x56878187e875ef52ull,
	0x3b81070b00ada0d9ull, 0xa6137d770ea33e22ull, 0x491a9c9ee3184a9dull,
	0x455e424977cb1d04ull,
};

/* A mask of the top `bits` bits of the hash. After the shift-left update the
 * top bits mix the last 64 bytes, the low bits only the last few, so the
 * cut test looks at the top. */
static uint64_t chunker__mask(unsigned bits)
{
	if (bits == 0)
		return 0;
	if (bits >= 64)
		return ~(uint64_t)0;
	return ~(~(uint64_t)0 >> bits);
}

static unsigned chunker__log2(size_t v)
{
	unsigned n = 0;
	while (v > 1) {
		v >>= 1;
		n++;
	}
	return n;
}

void chunker_init(struct chunker *c)
{
	int r = chunker_init_sizes(c, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
	(void)r; /* the defaults are valid: see the _Static_asserts below */
}

_Static_assert(CHUNK_MIN < CHUNK_AVG && CHUNK_AVG < CHUNK_MAX &&
		       CHUNK_MAX <= CHUNK_PROTO_MAX && (CHUNK_AVG & (CHUNK_AVG - 1)) == 0,
	       "bad default chunk sizes");

int chunker_init_sizes(struct chunker *c, size_t min, size_t avg, size_t max)
{
	if (avg == 0 || (avg & (avg - 1)) != 0 || !(min < avg && avg < max) ||
	    max > CHUNK_PROTO_MAX)
		return -EINVAL;
	/*
	 * Normalized chunking (level 2): before avg a cut needs log2(avg) + 2
	 * zero bits (4x rarer than 1/avg), after it log2(avg) - 2 (4x more
	 * likely). This squeezes the size distribution towards avg, so fewer
	 * chunks hit min or max, which is what keeps boundaries content-defined.
	 */
	unsigned bits = chunker__log2(avg);
	c->mask_s = chunker__mask(bits + 2);
	c->mask_l = chunker__mask(bits > 3 ? bits - 2 : 1);
	c->min = min;
	c->avg = avg;
	c->max = max;
	return 0;
}

size_t chunker_next(const struct chunker *c, const uint8_t *data, size_t len, int eof)
{
	if (len <= c->min)
		return eof ? len : 0;

	/*
	 * The hash starts from zero at offset min of every chunk: the first min
	 * bytes can never hold a cut, so hashing them would be wasted work. A
	 * cut therefore depends only on the bytes between min and itself, which
	 * is what makes the result independent of how the input was fed: a
	 * window too short to decide returns 0 and is rescanned, with more
	 * bytes, from the same start.
	 */
	size_t end = len < c->max ? len : c->max;
	size_t normal = c->avg < end ? c->avg : end;
	uint64_t h = 0;
	size_t i = c->min;

	for (; i < normal; i++) {
		h = (h << 1) + chunker__gear[data[i]];
		if (!(h & c->mask_s))
			return i + 1;
	}
	for (; i < end; i++) {
		h = (h << 1) + chunker__gear[data[i]];
		if (!(h & c->mask_l))
			return i + 1;
	}
	if (end == c->max || eof)
		return end;
	return 0;
}
