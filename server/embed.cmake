# Writes the bytes of IN as a C array named NAME (default srv_web_page), with
# its length in NAME_len, into OUT (run with cmake -DIN=... -DOUT=...
# [-DNAME=...] -P embed.cmake), so the binary serves the page without
# reading any file.
if(NOT NAME)
  set(NAME srv_web_page)
endif()
get_filename_component(in_name "${IN}" NAME)
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n_hex)
math(EXPR n_bytes "${n_hex} / 2")
# Each byte as xHH, 16 to a line, then 0xHH, or (char)0xHH past 0x7f (UTF-8
# text: char may be signed).
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "x\\1," body "${hex}")
string(REGEX REPLACE "(x..,x..,x..,x..,x..,x..,x..,x..,x..,x..,x..,x..,x..,x..,x..,x..,)" "\\1\n" body "${body}")
string(REGEX REPLACE "x([0-7])" "0x\\1" body "${body}")
string(REGEX REPLACE "x([89a-f])" "(char)0x\\1" body "${body}")
file(WRITE "${OUT}" "/* Generated from web/${in_name} by server/embed.cmake: do not edit. */\n#include <stddef.h>\n\nextern const char ${NAME}[];\nextern const size_t ${NAME}_len;\nconst char ${NAME}[] = {\n${body}0};\nconst size_t ${NAME}_len = ${n_bytes};\n")
