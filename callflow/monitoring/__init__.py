"""Silent monitoring (promise 4): the gate every listen passes, the room guard that removes
anyone the service did not put in a call's room, the Helplines Manager's phone line, and the
conference callbacks that start and end a listen."""
