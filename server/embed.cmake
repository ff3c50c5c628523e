# Writes the bytes of IN as a C array named srv_web_page into OUT (run with
# cmake -DIN=... -DOUT=... -P embed.cmake), so the binary serves the page
# without reading any file.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n_hex)
math(EXPR n_bytes "${n_hex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE "${OUT}" "/* Generated from web/index.html by server/embed.cmake: do not edit. */\n#include <stddef.h>\n\nextern const char srv_web_page[];\nextern const size_t srv_web_page_len;\nconst char srv_web_page[] = {\n${body}0};\nconst size_t srv_web_page_len = ${n_bytes};\n")
