"""Inputs the long fuzz run (benchmarks/fuzz_loaders.py) found breaking the rules, kept as
regressions: each must be refused with one sentence or skipped with a warning."""

import tempfile
from pathlib import Path

from fuzz_targets import TARGETS, run_one

# A PNG whose IHDR chunk is cut short: Pillow raised ValueError out of data/images.py.
TRUNCATED_IHDR_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000049484452000000090000000c08020000003f3e00f40000015b49444154789c01"
    "5001affe015293c08c6decf10873a80e781900aa8c044e6265fb52e82d5c0513022b41ce3f7c064a515343de"
    "15cf2c3a9a050d9ed05d5f9bf55f4f2e04221fdb3eaab62d3ff15ffbd0d1c4061b731b833c9b27c989bd7815"
    "00e5b9cef94cd747e9fdfee24d7506b981d77707a721d02ab89ddb67006703948ef0f2bfb21c3bf0cf938a1b"
    "4fc430fb67b13402d2d4705e01d5af6c71f0ef1d382bf6630360c5bea2bf0fcc0000000093e1b1d9043c7409"
    "1b1b7d2ae3695b420eb8b054a28c75dea8c3b900074004990034a4d4313d4b7731d8151264f2924b7205a034"
    "28c4da549ed13d2002f79a8910cf6123174ff409592999e0efa309b1f946cb414dec82db01ef0e65b3da26f4"
    "3e57d4513c45cc9995d4551a95513ad77d77dfed024e719a7ed6c5f12820e44d71061d0327a3e2526307e0d2"
    "6d055ef7027570cc67c79b5d17ba912a09c4f7f5e25c55dd08370824c5f7ffe2fb519d15a8d9982f00000000"
    "493ed0c5f654e3c4a0e74b31900d454e44ae426082")
# A PDF whose page tree refers to itself: pypdf raised LimitReachedError out of the reader.
SELF_REFERENCING_PDF = bytes.fromhex(
    "255044462d312e330a25e2e3cfd30a312030206f626a0a3c3c0a2f50726f647563657220287079706466290a"
    "2f5469746c65202873656564290a3e3e0a656e646f626a0a322030206f626a0a3c340a2f54797065202f5061"
    "6765730a2f436f756e7420310a2f4b696473205b203420302052205d0a3e3e0a656e646f626a0a332030206f"
    "626a0a3c3c0a2f54797065202f436174612c6f670a2f50616765732032203020520a3e3e0a656e646f626a0a"
    "342030206f626a0a3c3c0a2f54797065202f506167650a2f5265736f7572636573203c3c0a3e3e0a2f4d6524"
    "6961426f78205b20302e3020302e30203732203732205d0a2f506172656e742032203020520a3e3e0a656e64"
    "6f626a0a787265660a3020350a303030303030303030302036353533352066200a3030303030303030313520"
    "3030303030206e200a30303030303030303638203030303030206e200a303030303030303132372030303030"
    "30206e200a30303030303030313736203030303030206e200a747261696c65720a3c3c0a2f53697a6520350a"
    "2f526f6f742033203020520a2f496e666f2031203020520a3e3e0a7374617274787265660a3236380a252545"
    "4f460a")


def test_a_png_with_a_truncated_header_is_refused():
    with tempfile.TemporaryDirectory() as tmp:
        assert run_one(TARGETS["image_png"], TRUNCATED_IHDR_PNG, Path(tmp)) == "refused"


def test_a_self_referencing_pdf_is_skipped_with_a_warning():
    from parrot.rag.documents import read_documents

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "loop.pdf"
        path.write_bytes(SELF_REFERENCING_PDF)
        warnings: list[str] = []
        [(_, _, text)] = list(read_documents([path], warnings.append))
        assert text is None and "loop.pdf" in warnings[0]
