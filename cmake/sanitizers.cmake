# atoll_enable_sanitizers(<list>)
#
# Instruments everything defined from the calling directory downwards (library, tests,
# examples): <list> is ATOLL_SANITIZE, e.g. "address,undefined" or "thread"; "" does nothing.
# Applied as directory-wide compile *and* link options, because a sanitizer runtime must be
# linked into every executable whose objects were instrumented.
#
#   -fno-omit-frame-pointer        usable stack traces from the fast unwinder
#   -fno-sanitize-recover=all      (UBSan) the first undefined behaviour fails the test instead
#                                  of printing a line nobody reads
#
# Runtime options are the caller's business (scripts/test sets ASAN_OPTIONS, UBSAN_OPTIONS,
# TSAN_OPTIONS). With clang, Debian needs libclang-rt-14-dev for the runtimes.
function(atoll_enable_sanitizers sanitizers)
  if(sanitizers STREQUAL "")
    return()
  endif()
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
    message(FATAL_ERROR "ATOLL_SANITIZE needs g++ or clang++ (got ${CMAKE_CXX_COMPILER_ID})")
  endif()

  string(REPLACE "," ";" items "${sanitizers}")
  foreach(item IN LISTS items)
    if(NOT item MATCHES "^(address|undefined|thread|leak)$")
      message(FATAL_ERROR
        "ATOLL_SANITIZE: unknown sanitizer '${item}' "
        "(use \"address,undefined\" or \"thread\")")
    endif()
  endforeach()
  if("thread" IN_LIST items AND ("address" IN_LIST items OR "leak" IN_LIST items))
    message(FATAL_ERROR "ATOLL_SANITIZE: 'thread' cannot be combined with 'address'/'leak'")
  endif()

  set(flags "-fsanitize=${sanitizers}" -fno-omit-frame-pointer)
  if("undefined" IN_LIST items)
    list(APPEND flags -fno-sanitize-recover=all)
  endif()

  add_compile_options(${flags})
  add_link_options(${flags})
  message(STATUS "atoll: sanitizers enabled: ${sanitizers}")
endfunction()
