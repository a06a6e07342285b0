package integration

import "syscall"

const syscallSIGTERM = syscall.SIGTERM
