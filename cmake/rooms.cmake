# pare_room(NAME SOURCES ... DEPS ...): one static library per room.
#
# A room's headers live beside its sources in src/<room>/ and are included as
# "pare/<room>/x.h". The include root for a room is a directory in the build
# tree that holds a single link pare/<room> -> src/<room>; a target sees the
# headers of exactly the rooms it links (PUBLIC deps propagate), so a room that
# includes a room above it fails to compile: the arrows in docs/architecture.md
# are enforced by the build, not by review.
function(pare_room name)
  cmake_parse_arguments(R "" "" "SOURCES;DEPS;LIBS" ${ARGN})
  set(root ${CMAKE_BINARY_DIR}/rooms/${name})
  file(MAKE_DIRECTORY ${root}/pare)
  if(NOT EXISTS ${root}/pare/${name})
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/src/${name} ${root}/pare/${name} SYMBOLIC)
  endif()
  add_library(pare_${name} STATIC ${R_SOURCES})
  target_include_directories(pare_${name} PUBLIC ${root})
  target_link_libraries(pare_${name} PUBLIC pare_flags)
  foreach(dep ${R_DEPS})
    target_link_libraries(pare_${name} PUBLIC pare_${dep})
  endforeach()
  if(R_LIBS)
    target_link_libraries(pare_${name} PRIVATE ${R_LIBS})
  endif()
endfunction()
