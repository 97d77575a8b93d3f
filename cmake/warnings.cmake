# atoll_set_warnings(<target>)
#
# The warning set every atoll target is built with (library, tests, examples, benchmarks):
# -Wall -Wextra -Wpedantic on g++ and clang++, plus -Werror when ATOLL_WERROR is ON (CI and
# scripts/test turn it on; it stays off by default so a newer compiler's new warning does not
# break a user's build). PRIVATE: consumers of atoll::atoll never inherit these flags.
# Dependencies (Asio, fmt, spdlog, GoogleTest) come from system include directories, whose
# warnings the compilers suppress.
function(atoll_set_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
    if(ATOLL_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  elseif(MSVC)
    target_compile_options(${target} PRIVATE /W4)
    if(ATOLL_WERROR)
      target_compile_options(${target} PRIVATE /WX)
    endif()
  endif()
endfunction()
