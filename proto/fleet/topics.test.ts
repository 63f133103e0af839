import { describe, expect, it } from 'vitest';
import { agentMayUseTopic, agentTopic, allAgentsFilter, parseAgentTopic } from './index.js';

describe('fleet topics', () => {
  it('names every agent topic under ferry/v1/agents/{id}/', () => {
    expect(agentTopic('a1', 'policy')).toBe('ferry/v1/agents/a1/policy');
    expect(agentTopic('a1', 'command-results')).toBe('ferry/v1/agents/a1/command-results');
    expect(allAgentsFilter('status')).toBe('ferry/v1/agents/+/status');
  });

  it('parses only well-formed agent topics', () => {
    expect(parseAgentTopic('ferry/v1/agents/a1/status')).toEqual({ agentId: 'a1', kind: 'status' });
    expect(parseAgentTopic('ferry/v1/agents/a1/nope')).toBeUndefined();
    expect(parseAgentTopic('ferry/v1/agents/a1/status/extra')).toBeUndefined();
    expect(parseAgentTopic('ferry/v1/agents//status')).toBeUndefined();
    expect(parseAgentTopic('ferry/v1/agents/+/status')).toBeUndefined();
    expect(parseAgentTopic('other/a1/status')).toBeUndefined();
  });

  it('lets an agent use only its own topics, never wildcards or $ topics', () => {
    const own = ['ferry/v1/agents/A/status', 'ferry/v1/agents/A/commands', 'ferry/v1/agents/A/policy'];
    for (const t of own) expect(agentMayUseTopic('A', t), t).toBe(true);
    const refused = [
      '#',
      '+/+/+/+/+',
      'ferry/v1/agents/#',
      'ferry/v1/agents/+/status',
      'ferry/v1/agents/A/#',
      'ferry/v1/agents/A/+',
      'ferry/v1/agents/B/commands',
      'ferry/v1/agents/AB/status',
      'ferry/v1/agents/A',
      'ferry/v1/agents/A/',
      '$SYS/broker/clients',
      '$share/g/ferry/v1/agents/A/status',
    ];
    for (const t of refused) expect(agentMayUseTopic('A', t), t).toBe(false);
  });
});
